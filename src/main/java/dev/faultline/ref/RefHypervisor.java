package dev.faultline.ref;

import dev.faultline.hv.Caps;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemoryFaultReasons;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;

/**
 * The reference hypervisor: x86-64 guests interpreted in pure Java over the same host memory
 * objects the kvm backend maps. Stateless apart from the VMs it creates; thread-safe.
 */
public final class RefHypervisor implements Hypervisor {
    @Override public String name() { return "ref"; }

    @Override public int apiVersion() { return 12; }

    /** Answers like KVM_CHECK_EXTENSION for what the ref backend implements; 0 for everything else. */
    @Override
    public long checkExtension(int cap) {
        return switch (cap) {
            case Caps.USER_MEMORY, Caps.SET_TSS_ADDR, Caps.USER_MEMORY2 -> 1;
            case Caps.NR_VCPUS -> 64;
            case Caps.MAX_VCPUS -> RefVm.MAX_VCPUS;
            case Caps.NR_MEMSLOTS -> RefVm.MAX_USER_SLOTS;
            case Caps.VM_TYPES -> 1L << Caps.VM_TYPE_DEFAULT | 1L << Caps.VM_TYPE_SW_PROTECTED;
            case Caps.MEMORY_FAULT_INFO, Caps.GUEST_MEMFD -> 1;
            // As upstream on /dev/kvm: what some VM type supports; a VM answers for its own type.
            case Caps.MEMORY_ATTRIBUTES -> Caps.MEMORY_ATTRIBUTE_PRIVATE;
            case Caps.FAULTLINE_MEMORY_FAULT_EXIT -> MemoryFaultReasons.VALID;
            case Caps.EXIT_HYPERCALL -> PrivateMemory.EXIT_HYPERCALL_MAP_GPA_RANGE;
            default -> 0;
        };
    }

    @Override
    public Vm createVm(int type) {
        if (type != Caps.VM_TYPE_DEFAULT && type != Caps.VM_TYPE_SW_PROTECTED) {
            throw new ErrnoException("KVM_CREATE_VM", Errno.EINVAL, "ref hypervisor", "VM type " + type + " is not supported");
        }
        return new RefVm(this, type);
    }

    @Override public void close() {}
}
