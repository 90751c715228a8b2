package dev.faultline.vmm;

import dev.faultline.guest.GuestImage;
import dev.faultline.hv.Caps;
import java.io.PrintStream;
import java.time.Duration;

/**
 * Everything needed to assemble a machine: RAM, vCPUs, the image and how to run it.
 *
 * @param image      the guest image (bytes, load gpa, entry), checked against RAM when the machine is built
 * @param exitLogLimit exits kept per vCPU for reports (0: none, the loop then allocates nothing)
 * @param consoleEcho where console bytes are echoed as they come, or null
 */
public record MachineSpec(long ramSize, GuestRam.Backing backing, int vcpus, GuestImage image,
                          int vmType, int mainSlotFlags, int exitLogLimit, Duration timeout,
                          PrintStream consoleEcho, MemoryFaultHandler faultHandler) {

    public MachineSpec {
        if (vcpus < 1) throw new IllegalArgumentException("at least one vCPU is needed, got " + vcpus);
        if (faultHandler == null) faultHandler = MemoryFaultHandler.NONE;
        if (timeout == null) timeout = Duration.ofMinutes(5);
        if (backing == null) backing = GuestRam.Backing.ANONYMOUS;
    }

    public static MachineSpec of(long ramSize, int vcpus, GuestImage image) {
        return new MachineSpec(ramSize, GuestRam.Backing.ANONYMOUS, vcpus, image,
                Caps.VM_TYPE_DEFAULT, 0, 1000, Duration.ofMinutes(5), null, MemoryFaultHandler.NONE);
    }

    public MachineSpec withExitLogLimit(int limit) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, limit, timeout, consoleEcho, faultHandler);
    }

    public MachineSpec withTimeout(Duration t) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, t, consoleEcho, faultHandler);
    }

    public MachineSpec withConsoleEcho(PrintStream echo) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, echo, faultHandler);
    }

    public MachineSpec withBacking(GuestRam.Backing b) {
        return new MachineSpec(ramSize, b, vcpus, image, vmType, mainSlotFlags, exitLogLimit, timeout, consoleEcho, faultHandler);
    }

    public MachineSpec withMainSlot(int flags, MemoryFaultHandler handler) {
        return new MachineSpec(ramSize, backing, vcpus, image, vmType, flags, exitLogLimit, timeout, consoleEcho, handler);
    }
}
