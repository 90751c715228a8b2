package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Typed wrappers over the /dev/kvm system, VM and vCPU ioctls. Each wrapper fills the C struct from its
 * descriptor class, issues the ioctl and turns -1 into an {@link ErrnoException} naming the ioctl, the
 * errno and the {@code subject} the caller describes ("vm fd 5, slot 1 gpa 0x100000").
 *
 * <p>Calls that a vCPU makes take its own errno capture segment; set-up calls use the calling thread's.
 * {@link #run} is the exception to the throwing rule: it returns the raw result, because a -1 from
 * KVM_RUN is part of the memory-fault contract and only the exit decoder may interpret it.
 */
public final class Kvm {
    private Kvm() {}

    public static final int KVMIO = 0xAE;
    public static final int API_VERSION = 12;
    public static final String DEVICE = "/dev/kvm";

    // System ioctls (/dev/kvm fd).
    public static final long KVM_GET_API_VERSION = Ioc.io(KVMIO, 0x00);
    public static final long KVM_CREATE_VM = Ioc.io(KVMIO, 0x01);
    /** Also on a VM fd (KVM_CAP_CHECK_EXTENSION_VM), where answers may depend on the VM type. */
    public static final long KVM_CHECK_EXTENSION = Ioc.io(KVMIO, 0x03);
    public static final long KVM_GET_VCPU_MMAP_SIZE = Ioc.io(KVMIO, 0x04);
    public static final long KVM_GET_SUPPORTED_CPUID = Ioc.iowr(KVMIO, 0x05, KvmCpuid2Layout.HEADER_SIZE);

    // VM ioctls.
    public static final long KVM_CREATE_VCPU = Ioc.io(KVMIO, 0x41);
    public static final long KVM_GET_DIRTY_LOG = Ioc.iow(KVMIO, 0x42, KvmDirtyLogLayout.SIZE);
    public static final long KVM_SET_USER_MEMORY_REGION = Ioc.iow(KVMIO, 0x46, KvmUserspaceMemoryRegionLayout.SIZE);
    public static final long KVM_SET_TSS_ADDR = Ioc.io(KVMIO, 0x47);
    public static final long KVM_SET_IDENTITY_MAP_ADDR = Ioc.iow(KVMIO, 0x48, 8);
    public static final long KVM_SET_USER_MEMORY_REGION2 = Ioc.iow(KVMIO, 0x49, KvmUserspaceMemoryRegion2Layout.SIZE);
    /** Also on a vCPU fd. */
    public static final long KVM_ENABLE_CAP = Ioc.iow(KVMIO, 0xa3, KvmEnableCapLayout.SIZE);
    public static final long KVM_SET_MEMORY_ATTRIBUTES = Ioc.iow(KVMIO, 0xd2, KvmMemoryAttributesLayout.SIZE);
    public static final long KVM_CREATE_GUEST_MEMFD = Ioc.iowr(KVMIO, 0xd4, KvmCreateGuestMemfdLayout.SIZE);

    // vCPU ioctls.
    public static final long KVM_RUN = Ioc.io(KVMIO, 0x80);
    public static final long KVM_GET_REGS = Ioc.ior(KVMIO, 0x81, KvmRegsLayout.SIZE);
    public static final long KVM_SET_REGS = Ioc.iow(KVMIO, 0x82, KvmRegsLayout.SIZE);
    public static final long KVM_GET_SREGS = Ioc.ior(KVMIO, 0x83, KvmSregsLayout.SIZE);
    public static final long KVM_SET_SREGS = Ioc.iow(KVMIO, 0x84, KvmSregsLayout.SIZE);
    /**
     * struct kvm_translation { u64 linear_address; u64 physical_address; u8 valid, writeable, usermode,
     * pad[5]; } (24 bytes): a guest linear address through the vCPU's current page tables.
     */
    public static final long KVM_TRANSLATE = Ioc.iowr(KVMIO, 0x85, 24);
    /** struct kvm_signal_mask { u32 len; u8 sigset[]; }: the ioctl encodes only the 4-byte header. */
    public static final long KVM_SET_SIGNAL_MASK = Ioc.iow(KVMIO, 0x8b, 4);
    public static final long KVM_SET_CPUID2 = Ioc.iow(KVMIO, 0x90, KvmCpuid2Layout.HEADER_SIZE);
    /** struct kvm_pre_fault_memory { u64 gpa, size, flags, padding[5]; } (64 bytes). */
    public static final long KVM_PRE_FAULT_MEMORY = Ioc.iowr(KVMIO, 0xd5, 64);

    /** Where QEMU puts the three pages of the real-mode TSS on Intel: just below the 4 GiB BIOS area. */
    public static final long DEFAULT_TSS_ADDR = 0xfffbd000L;

    private static int check(MemorySegment capture, int ret, String call, String subject) {
        if (ret == -1) throw new ErrnoException(call, Libc.errno(capture), subject);
        return ret;
    }

    private static int ioctl(int fd, long request, long arg, String call, String subject) {
        MemorySegment capture = Libc.errnoSegment();
        return check(capture, Libc.ioctl(capture, fd, request, arg), call, subject);
    }

    /** Opens /dev/kvm (or {@code path}) read-write, close-on-exec. */
    public static int open(String path) {
        int fd = Libc.open(path, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd == -1) throw new ErrnoException("open", Libc.lastErrno(), path);
        return fd;
    }

    public static int getApiVersion(int kvmFd) {
        return ioctl(kvmFd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION", "kvm fd " + kvmFd);
    }

    /** KVM_CHECK_EXTENSION on a system or VM fd: 0 when absent, else the capability's value. */
    public static long checkExtension(int fd, int cap, String subject) {
        return ioctl(fd, KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION(" + cap + ")", subject);
    }

    public static int createVm(int kvmFd, int type) {
        return ioctl(kvmFd, KVM_CREATE_VM, type, "KVM_CREATE_VM", "kvm fd " + kvmFd + ", vm type " + type);
    }

    public static int getVcpuMmapSize(int kvmFd) {
        return ioctl(kvmFd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE", "kvm fd " + kvmFd);
    }

    /**
     * KVM_GET_SUPPORTED_CPUID into a kvm_cpuid2 allocated in {@code arena}, retried with a larger
     * buffer while the kernel answers E2BIG.
     */
    public static MemorySegment getSupportedCpuid(int kvmFd, Arena arena) {
        for (int nent = 64; ; nent *= 2) {
            MemorySegment cpuid = arena.allocate(KvmCpuid2Layout.sizeFor(nent), 8);
            cpuid.set(ValueLayout.JAVA_INT, KvmCpuid2Layout.NENT, nent);
            MemorySegment capture = Libc.errnoSegment();
            int ret = Libc.ioctl(capture, kvmFd, KVM_GET_SUPPORTED_CPUID, cpuid.address());
            if (ret == 0) return cpuid;
            int errno = Libc.errno(capture);
            if (errno != Errno.E2BIG || nent >= 4096) throw new ErrnoException("KVM_GET_SUPPORTED_CPUID", errno, "kvm fd " + kvmFd);
        }
    }

    public static int createVcpu(int vmFd, int id, String subject) {
        return ioctl(vmFd, KVM_CREATE_VCPU, id, "KVM_CREATE_VCPU", subject + ", vcpu id " + id);
    }

    public static void setTssAddr(int vmFd, long addr, String subject) {
        ioctl(vmFd, KVM_SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR", subject + ", addr 0x" + Long.toHexString(addr));
    }

    /** The legacy memslot ioctl (no guest_memfd). */
    public static void setUserMemoryRegion(int vmFd, int slot, int flags, long gpa, long size, long hva, String subject) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r = a.allocate(KvmUserspaceMemoryRegionLayout.SIZE, 8);
            r.set(ValueLayout.JAVA_INT, KvmUserspaceMemoryRegionLayout.SLOT, slot);
            r.set(ValueLayout.JAVA_INT, KvmUserspaceMemoryRegionLayout.FLAGS, flags);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegionLayout.GUEST_PHYS_ADDR, gpa);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegionLayout.MEMORY_SIZE, size);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegionLayout.USERSPACE_ADDR, hva);
            ioctl(vmFd, KVM_SET_USER_MEMORY_REGION, r.address(), "KVM_SET_USER_MEMORY_REGION", subject);
        }
    }

    /** KVM_SET_USER_MEMORY_REGION2 (KVM_CAP_USER_MEMORY2); {@code guestMemfd} is used with KVM_MEM_GUEST_MEMFD. */
    public static void setUserMemoryRegion2(int vmFd, int slot, int flags, long gpa, long size, long hva,
                                            long guestMemfdOffset, int guestMemfd, String subject) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r = a.allocate(KvmUserspaceMemoryRegion2Layout.SIZE, 8); // zeroed: pad1, pad2 must be 0
            r.set(ValueLayout.JAVA_INT, KvmUserspaceMemoryRegion2Layout.SLOT, slot);
            r.set(ValueLayout.JAVA_INT, KvmUserspaceMemoryRegion2Layout.FLAGS, flags);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegion2Layout.GUEST_PHYS_ADDR, gpa);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegion2Layout.MEMORY_SIZE, size);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegion2Layout.USERSPACE_ADDR, hva);
            r.set(ValueLayout.JAVA_LONG, KvmUserspaceMemoryRegion2Layout.GUEST_MEMFD_OFFSET, guestMemfdOffset);
            r.set(ValueLayout.JAVA_INT, KvmUserspaceMemoryRegion2Layout.GUEST_MEMFD, guestMemfd);
            ioctl(vmFd, KVM_SET_USER_MEMORY_REGION2, r.address(), "KVM_SET_USER_MEMORY_REGION2", subject);
        }
    }

    /** KVM_CREATE_GUEST_MEMFD: returns the new file descriptor. */
    public static int createGuestMemfd(int vmFd, long size, long flags, String subject) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment g = a.allocate(KvmCreateGuestMemfdLayout.SIZE, 8);
            g.set(ValueLayout.JAVA_LONG, KvmCreateGuestMemfdLayout.SIZE_FIELD, size);
            g.set(ValueLayout.JAVA_LONG, KvmCreateGuestMemfdLayout.FLAGS, flags);
            return ioctl(vmFd, KVM_CREATE_GUEST_MEMFD, g.address(), "KVM_CREATE_GUEST_MEMFD", subject);
        }
    }

    public static void setMemoryAttributes(int vmFd, long gpa, long size, long attributes, String subject) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(KvmMemoryAttributesLayout.SIZE, 8);
            m.set(ValueLayout.JAVA_LONG, KvmMemoryAttributesLayout.ADDRESS, gpa);
            m.set(ValueLayout.JAVA_LONG, KvmMemoryAttributesLayout.SIZE_FIELD, size);
            m.set(ValueLayout.JAVA_LONG, KvmMemoryAttributesLayout.ATTRIBUTES, attributes);
            ioctl(vmFd, KVM_SET_MEMORY_ATTRIBUTES, m.address(), "KVM_SET_MEMORY_ATTRIBUTES", subject);
        }
    }

    /** KVM_ENABLE_CAP on a VM or vCPU fd with up to four arguments. */
    public static void enableCap(int fd, int cap, long[] args, String subject) {
        if (args.length > KvmEnableCapLayout.ARGS_COUNT) {
            throw new IllegalArgumentException("KVM_ENABLE_CAP takes at most 4 arguments, got " + args.length);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment c = a.allocate(KvmEnableCapLayout.SIZE, 8);
            c.set(ValueLayout.JAVA_INT, KvmEnableCapLayout.CAP, cap);
            for (int i = 0; i < args.length; i++) c.set(ValueLayout.JAVA_LONG, KvmEnableCapLayout.ARGS + 8L * i, args[i]);
            ioctl(fd, KVM_ENABLE_CAP, c.address(), "KVM_ENABLE_CAP(" + cap + ")", subject);
        }
    }

    /** KVM_GET_DIRTY_LOG of {@code slot} into {@code bitmap} (one bit per page, 64-bit words). */
    public static void getDirtyLog(int vmFd, int slot, MemorySegment bitmap, String subject) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment d = a.allocate(KvmDirtyLogLayout.SIZE, 8);
            d.set(ValueLayout.JAVA_INT, KvmDirtyLogLayout.SLOT, slot);
            d.set(ValueLayout.JAVA_LONG, KvmDirtyLogLayout.DIRTY_BITMAP, bitmap.address());
            ioctl(vmFd, KVM_GET_DIRTY_LOG, d.address(), "KVM_GET_DIRTY_LOG", subject + ", slot " + slot);
        }
    }

    /** mmap of a vCPU fd's kvm_run area ({@link #getVcpuMmapSize} bytes, MAP_SHARED). */
    public static MemorySegment mapRun(int vcpuFd, long size, String subject) {
        long addr = Libc.mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, vcpuFd, 0);
        if (addr == Libc.MAP_FAILED) throw new ErrnoException("mmap(kvm_run)", Libc.lastErrno(), subject);
        return MemorySegment.ofAddress(addr).reinterpret(size);
    }

    /** KVM_RUN, raw: 0, or -1 with errno in {@code capture}. Never throws for a failed run. */
    public static int run(MemorySegment capture, int vcpuFd) {
        return Libc.ioctl(capture, vcpuFd, KVM_RUN, 0);
    }

    /** A vCPU ioctl whose argument is a buffer the vCPU owns (regs, sregs): raw result, errno in {@code capture}. */
    public static void vcpuIoctl(MemorySegment capture, int vcpuFd, long request, MemorySegment arg, String call, String subject) {
        check(capture, Libc.ioctl(capture, vcpuFd, request, arg.address()), call, subject);
    }

    /**
     * KVM_TRANSLATE of guest linear address {@code linear} with the vCPU's page tables, into
     * {@code buf} (24 bytes, the vCPU's own): the guest-physical address, or -1 where it does not map.
     */
    public static long translate(MemorySegment capture, int vcpuFd, long linear, MemorySegment buf, String subject) {
        buf.fill((byte) 0);
        buf.set(ValueLayout.JAVA_LONG, 0, linear);
        vcpuIoctl(capture, vcpuFd, KVM_TRANSLATE, buf, "KVM_TRANSLATE", subject);
        return buf.get(ValueLayout.JAVA_BYTE, 16) != 0 ? buf.get(ValueLayout.JAVA_LONG, 8) : -1;
    }

    /** KVM_SET_CPUID2 with a kvm_cpuid2 (as {@link #getSupportedCpuid} returns). */
    public static void setCpuid2(int vcpuFd, MemorySegment cpuid, String subject) {
        ioctl(vcpuFd, KVM_SET_CPUID2, cpuid.address(), "KVM_SET_CPUID2", subject);
    }

    /** KVM_SET_SIGNAL_MASK: the 64-bit kernel signal mask in force while this vCPU is in KVM_RUN. */
    public static void setSignalMask(int vcpuFd, long kernelMask, String subject) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(4 + Libc.KERNEL_SIGSET_SIZE, 8);
            m.set(ValueLayout.JAVA_INT, 0, (int) Libc.KERNEL_SIGSET_SIZE);
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, 4, kernelMask);
            ioctl(vcpuFd, KVM_SET_SIGNAL_MASK, m.address(), "KVM_SET_SIGNAL_MASK", subject);
        }
    }
}
