package dev.faultline.vmm;

import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Vm;

/**
 * The part of a {@link Machine} that depends only on the RAM size: a VM with its RAM mapped and
 * installed as memslots, and no vCPU. Built ahead of the rest (a restore builds it while the
 * snapshot's description is still being read and checked), then either completed into a machine
 * ({@link Machine#Machine(Hypervisor, MachineSpec, VmShell)}, which takes it over) or closed. Since
 * it has no vCPU, nothing can run in it.
 *
 * <p>Threading: built, completed or closed by one thread at a time.
 */
public final class VmShell implements AutoCloseable {
    private final Hypervisor hypervisor;
    private final Vm vm;
    private final GuestRam ram;
    private final GuestRam.Backing backing;
    private final int vmType;
    private final int mainSlotFlags;
    private boolean handedOver;
    private boolean closed;

    private VmShell(Hypervisor hypervisor, Vm vm, GuestRam ram, GuestRam.Backing backing, int vmType, int mainSlotFlags) {
        this.hypervisor = hypervisor;
        this.vm = vm;
        this.ram = ram;
        this.backing = backing;
        this.vmType = vmType;
        this.mainSlotFlags = mainSlotFlags;
    }

    /** Creates the VM, maps {@code ramSize} bytes of RAM and installs it as {@link Machine} does. */
    public static VmShell create(Hypervisor hypervisor, long ramSize, GuestRam.Backing backing, int vmType, int mainSlotFlags) {
        GuestRam r = GuestRam.allocate(ramSize, backing);
        Vm v = null;
        try {
            v = hypervisor.createVm(vmType);
            r.install(v, 0, mainSlotFlags);
            return new VmShell(hypervisor, v, r, backing, vmType, mainSlotFlags);
        } catch (RuntimeException e) {
            if (v != null) v.close();
            r.close();
            throw e;
        }
    }

    public long ramSize() { return ram.size(); }

    /** Whether a machine of {@code spec} on {@code hv} can be completed from this shell. */
    public boolean fits(Hypervisor hv, MachineSpec spec) {
        return !closed && !handedOver && hv == hypervisor && spec.ramSize() == ram.size() && spec.backing() == backing
                && spec.vmType() == vmType && spec.mainSlotFlags() == mainSlotFlags;
    }

    /** Hands the VM and RAM to the machine being built, which closes them from now on. */
    Vm takeVm() {
        handedOver = true;
        return vm;
    }

    GuestRam ram() { return ram; }

    /** Closes the VM and unmaps RAM, unless a machine took them over. */
    @Override
    public void close() {
        if (closed || handedOver) return;
        closed = true;
        vm.close();
        ram.close();
    }
}
