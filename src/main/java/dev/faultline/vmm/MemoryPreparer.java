package dev.faultline.vmm;

import dev.faultline.hv.Vm;
import java.util.function.Consumer;

/**
 * Prepares guest RAM for a run after the VMM has written what it places (boot tables, image) and
 * before any vCPU enters the guest, and undoes that after every vCPU has stopped: for example
 * registering the main memslot with userfaultfd and starting the threads that serve its faults.
 *
 * <p>Order inside {@link Machine#run()}: {@link #prepare} on the calling thread, then each vCPU
 * thread calls {@link Session#vcpuThreadStarted} before its first entry, then all vCPUs run and stop
 * (each calling {@link Session#vcpuThreadStopping} on its way out),
 * then {@link Session#close()}, and only then is RAM hashed (a page still missing under userfaultfd
 * would block a reader forever).
 */
public interface MemoryPreparer {
    /** What a preparer may use: the VM, its RAM, the vCPU count, and a way to stop every vCPU with a reason. */
    record Context(Vm vm, GuestRam ram, int vcpus, Consumer<String> stopMachine) {}

    /** A prepared run; closed after every vCPU has stopped. */
    interface Session extends AutoCloseable {
        /** Called on vCPU {@code index}'s own thread before its first entry (e.g. to learn its thread id). */
        default void vcpuThreadStarted(int index) {}

        /** Called on vCPU {@code index}'s own thread after its last exit, before the thread ends. */
        default void vcpuThreadStopping(int index) {}

        @Override void close();
    }

    Session prepare(Context context);

    /** The default: RAM is used as it is. */
    MemoryPreparer NONE = context -> () -> {};
}
