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
 */
public record MachineSpec(long ramSize, GuestRam.Backing backing, int vcpus, GuestImage image,
                          int vmType, int mainSlotFlags, int exitLogLimit, Duration timeout,
                          PrintStream consoleEcho, MemoryFaultHandler faultHandler, MemoryPreparer memoryPreparer) {

    public MachineSpec {
        if (vcpus < 1) throw new IllegalArgumentException("at least one vCPU is needed, got " + vcpus);
        if (image == null) throw new IllegalArgumentException("a machine needs a guest image");
        if (faultHandler == null) faultHandler = MemoryFaultHandler.NONE;
        if (timeout == null) timeout = Duration.ofMinutes(5);
        if (backing == null) backing = GuestRam.Backing.ANONYMOUS;
        if (memoryPreparer == null) memoryPreparer = MemoryPreparer.NONE;
    }

    public static MachineSpec of(long ramSize, int vcpus, GuestImage image) {
        return new MachineSpec(ramSize, GuestRam.Backing.ANONYMOUS, vcpus, image, Caps.VM_TYPE_DEFAULT, 0, 1000,
                Duration.ofMinutes(5), null, MemoryFaultHandler.NONE, MemoryPreparer.NONE);
    }

    public MachineSpec withExitLogLimit(int limit) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, limit, timeout, consoleEcho, faultHandler, memoryPreparer);
    }

    public MachineSpec withTimeout(Duration t) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, t, consoleEcho, faultHandler, memoryPreparer);
    }

    public MachineSpec withConsoleEcho(PrintStream echo) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, echo, faultHandler, memoryPreparer);
    }

    public MachineSpec withBacking(GuestRam.Backing b) {
        return new MachineSpec(ramSize, b, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler, memoryPreparer);
    }

    public MachineSpec withMainSlot(int flags, MemoryFaultHandler handler) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, flags, exitLogLimit, timeout, consoleEcho, handler, memoryPreparer);
    }

    public MachineSpec withVmType(int type) {
        return new MachineSpec(ramSize, backing, vcpus, image, type, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler, memoryPreparer);
    }

    public MachineSpec withMemoryPreparer(MemoryPreparer p) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler, p);
    }
}
