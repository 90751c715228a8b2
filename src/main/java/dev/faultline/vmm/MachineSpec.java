package dev.faultline.vmm;

import dev.faultline.guest.GuestImage;
import dev.faultline.hv.Caps;
import java.io.PrintStream;
import java.time.Duration;

/**
 * Everything needed to assemble a machine: RAM, vCPUs, the image and how to run it.
 *
 * @param image          the guest image (bytes, load gpa, entry), checked against RAM when the machine is built
 * @param exitLogLimit   exits kept per vCPU for reports (0: none, the loop then allocates nothing)
 * @param consoleEcho    where console bytes are echoed as they come, or null
 * @param faultHandler   resolves memory-fault exits on the faulting vCPU's thread
 * @param memoryPreparer prepares RAM before the vCPUs start and tears down after they stop (e.g. userfaultfd)
 * @param initialState   null to boot {@code image} (system tables, image, entry registers); otherwise the
 *                       state every vCPU resumes from (a snapshot or a migration), and RAM is left as
 *                       the caller fills it — nothing is written to it; an empty list: the state is
 *                       given later with {@link Machine#loadState} (a migration destination builds its
 *                       machine before the source pauses, so that only registers are left to set then)
 */
public record MachineSpec(long ramSize, GuestRam.Backing backing, int vcpus, GuestImage image,
                          int vmType, int mainSlotFlags, int exitLogLimit, Duration timeout,
                          PrintStream consoleEcho, MemoryFaultHandler faultHandler, MemoryPreparer memoryPreparer,
                          java.util.List<VcpuState> initialState) {

    public MachineSpec {
        if (vcpus < 1) throw new IllegalArgumentException("at least one vCPU is needed, got " + vcpus);
        if (image == null && initialState == null) throw new IllegalArgumentException("a machine needs a guest image or a saved vCPU state");
        if (initialState != null && !initialState.isEmpty() && initialState.size() != vcpus) {
            throw new IllegalArgumentException("saved state holds " + initialState.size() + " vCPUs, the machine has " + vcpus);
        }
        if (initialState != null) initialState = java.util.List.copyOf(initialState);
        if (faultHandler == null) faultHandler = MemoryFaultHandler.NONE;
        if (timeout == null) timeout = Duration.ofMinutes(5);
        if (backing == null) backing = GuestRam.Backing.ANONYMOUS;
        if (memoryPreparer == null) memoryPreparer = MemoryPreparer.NONE;
    }

    public static MachineSpec of(long ramSize, int vcpus, GuestImage image) {
        return new MachineSpec(ramSize, GuestRam.Backing.ANONYMOUS, vcpus, image, Caps.VM_TYPE_DEFAULT, 0, 1000,
                Duration.ofMinutes(5), null, MemoryFaultHandler.NONE, MemoryPreparer.NONE, null);
    }

    public MachineSpec withExitLogLimit(int limit) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, limit, timeout, consoleEcho, faultHandler, memoryPreparer, initialState);
    }

    public MachineSpec withTimeout(Duration t) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, t, consoleEcho, faultHandler, memoryPreparer, initialState);
    }

    public MachineSpec withConsoleEcho(PrintStream echo) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, echo, faultHandler, memoryPreparer, initialState);
    }

    public MachineSpec withBacking(GuestRam.Backing b) {
        return new MachineSpec(ramSize, b, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler, memoryPreparer, initialState);
    }

    public MachineSpec withMainSlot(int flags, MemoryFaultHandler handler) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, flags, exitLogLimit, timeout, consoleEcho, handler, memoryPreparer, initialState);
    }

    public MachineSpec withVmType(int type) {
        return new MachineSpec(ramSize, backing, vcpus, image, type, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler, memoryPreparer, initialState);
    }

    /** A machine that resumes {@code state} (one entry per vCPU) on RAM its caller provides. */
    public static MachineSpec resuming(long ramSize, java.util.List<VcpuState> state) {
        return new MachineSpec(ramSize, GuestRam.Backing.ANONYMOUS, state.size(), null, Caps.VM_TYPE_DEFAULT, 0, 1000,
                Duration.ofMinutes(5), null, MemoryFaultHandler.NONE, MemoryPreparer.NONE, state);
    }

    /** A machine whose vCPU state is loaded later ({@link Machine#loadState}), on RAM its caller fills. */
    public static MachineSpec awaitingState(long ramSize, int vcpus) {
        return new MachineSpec(ramSize, GuestRam.Backing.ANONYMOUS, vcpus, null, Caps.VM_TYPE_DEFAULT, 0, 1000,
                Duration.ofMinutes(5), null, MemoryFaultHandler.NONE, MemoryPreparer.NONE, java.util.List.of());
    }

    /** True when the vCPU state is to be given with {@link Machine#loadState} before the start. */
    public boolean awaitsState() {
        return initialState != null && initialState.isEmpty();
    }

    public MachineSpec withMemoryPreparer(MemoryPreparer p) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler, p, initialState);
    }
}
