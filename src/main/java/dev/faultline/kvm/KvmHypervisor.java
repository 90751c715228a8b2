package dev.faultline.kvm;

import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Kvm;
import dev.faultline.sys.Libc;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The Linux KVM backend: /dev/kvm. Thread-safe; VMs may be created from any thread.
 */
public final class KvmHypervisor implements Hypervisor {
    private final String path;
    private final int fd;
    private final int apiVersion;
    private final int vcpuMmapSize;
    /**
     * KVM_GET_SUPPORTED_CPUID per device path, fetched once per process: what the kernel module
     * supports does not change while it is loaded, and the ioctl costs about a millisecond here, on
     * the path of every VM a restore builds.
     */
    private static final Map<String, MemorySegment> SUPPORTED_CPUID = new ConcurrentHashMap<>();
    private boolean closed;

    private KvmHypervisor(String path, int fd) {
        this.path = path;
        this.fd = fd;
        try {
            this.apiVersion = Kvm.getApiVersion(fd);
            if (apiVersion != Kvm.API_VERSION) {
                throw new IllegalStateException(path + " reports KVM API version " + apiVersion + "; faultline needs " + Kvm.API_VERSION);
            }
            this.vcpuMmapSize = Kvm.getVcpuMmapSize(fd);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /** Opens /dev/kvm. */
    public static KvmHypervisor open() {
        return open(Kvm.DEVICE);
    }

    /**
     * Opens the KVM device at {@code path}.
     * @throws ErrnoException naming open(2), the errno and the path, with a hint when KVM is missing
     *         (ENOENT, ENODEV, ENXIO) or not permitted (EACCES, EPERM)
     */
    public static KvmHypervisor open(String path) {
        int fd;
        try {
            fd = Kvm.open(path);
        } catch (ErrnoException e) {
            String hint = switch (e.errno()) {
                case Errno.ENOENT, Errno.ENODEV, Errno.ENXIO ->
                        "KVM is not available on this host (no kernel module or no hardware virtualisation); use --backend ref";
                case Errno.EACCES, Errno.EPERM -> "not permitted to use KVM: add the user to the 'kvm' group or run as root";
                default -> "";
            };
            throw new ErrnoException(e.call(), e.errno(), path, hint);
        }
        return new KvmHypervisor(path, fd);
    }

    @Override public String name() { return "kvm"; }
    @Override public int apiVersion() { return apiVersion; }
    public int fd() { return fd; }
    public String path() { return path; }
    int vcpuMmapSize() { return vcpuMmapSize; }

    @Override
    public long checkExtension(int cap) {
        return Kvm.checkExtension(fd, cap, "kvm fd " + fd);
    }

    /** KVM_GET_SUPPORTED_CPUID, fetched once per process and shared by every vCPU (KVM_SET_CPUID2 copies it; read-only). */
    MemorySegment supportedCpuid() {
        return SUPPORTED_CPUID.computeIfAbsent(path, p -> Kvm.getSupportedCpuid(fd, Arena.global()));
    }

    @Override
    public Vm createVm(int type) {
        int vmFd = Kvm.createVm(fd, type);
        try {
            return new KvmVm(this, vmFd, type);
        } catch (RuntimeException e) {
            Libc.close(vmFd);
            throw e;
        }
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.close(fd);
    }

    @Override
    public String toString() {
        return "kvm (" + path + ", fd " + fd + ", API " + apiVersion + ")";
    }
}
