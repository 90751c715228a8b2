package dev.faultline.hv;

/**
 * A hypervisor backend: the system-level object (/dev/kvm, or the reference hypervisor).
 * Thread safety: may be shared; creating VMs is thread-safe.
 */
public interface Hypervisor extends AutoCloseable {
    /** "kvm" or "ref". */
    String name();

    /** KVM_GET_API_VERSION (12 on every kernel since 2.6.22; ref reports 12 too). */
    int apiVersion();

    /** KVM_CHECK_EXTENSION on the system: 0 when the capability is absent, else its value. */
    long checkExtension(int cap);

    /** KVM_CREATE_VM of the given type ({@link Caps#VM_TYPE_DEFAULT} ...). */
    Vm createVm(int type);

    @Override void close();
}
