package dev.faultline.kvm;

import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.IovecLayout;
import dev.faultline.sys.KickSignal;
import dev.faultline.sys.Kvm;
import dev.faultline.sys.KvmRegsLayout;
import dev.faultline.sys.KvmRunLayout;
import dev.faultline.sys.KvmSregsLayout;
import dev.faultline.sys.Libc;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A KVM vCPU: its fd, its mmap'ed kvm_run, its own errno capture segment and exit flyweights.
 *
 * <p>Threading: one thread at a time calls {@link #run()} and the register methods; {@link #kick()}
 * may come from any thread.
 *
 * <p><b>kick()</b> sets {@code kvm_run.immediate_exit} (so a run that has not entered yet returns at
 * once) and, when the vCPU is inside KVM_RUN, sends {@link KickSignal} to its thread with tgkill.
 * The signal is SIG_IGN'd but blocked in the thread and unblocked only inside KVM_RUN through
 * KVM_SET_SIGNAL_MASK, so it is queued, makes KVM_RUN return EINTR, and never runs a handler. After
 * an {@link VcpuExit.Interrupted} the vCPU clears immediate_exit and drains queued kick signals; a
 * kick that races with a normal exit stays pending and makes the next run return Interrupted.
 *
 * <p><b>Memory faults reported from an MMIO exit inside a memslot</b> (this kernel's way of saying a
 * slot's host memory is unreachable): KVM considers the access an MMIO access still to be
 * completed, and on the next KVM_RUN it takes a read's value from kvm_run.mmio.data and drops a
 * write. So before re-entering, the vCPU completes the access against the slot's host memory
 * (process_vm_readv/writev on its own process, which fails with EFAULT instead of crashing when the
 * memory is still unreachable). If that still fails, {@link #run()} returns the same memory fault
 * again without entering the guest; if the VMM removed the slot meanwhile, it returns the access as
 * the {@link VcpuExit.Mmio} it then is.
 */
public final class KvmVcpu implements Vcpu {
    private static final VarHandle BYTE = ValueLayout.JAVA_BYTE.varHandle();
    private static final int PENDING_NONE = 0, PENDING_HYPERCALL = 1, PENDING_SLOT_ACCESS = 2;

    private final KvmVm vm;
    private final int id;
    private final int fd;
    private final String subject;
    private final MemorySegment run;
    private final MemorySegment capture = Libc.newErrnoSegment();
    private final VcpuExit.Set exits = new VcpuExit.Set();
    private final ExitDecoder decoder;
    private final MemorySegment regsBuf, sregsBuf, localIov, remoteIov, translateBuf;
    private final Regs fetchRegs = new Regs();
    private final KickSignal.Drainer drainer;
    private final int pid = Libc.getpid();

    private Thread preparedThread;
    private volatile int runningTid;
    private int pending = PENDING_NONE;
    /** After an emulation failure: the page the instruction could not be fetched from, to report; the rip retried once. */
    private long unreachableFetchPage = -1, emulationRetryRip = -1;
    private boolean closed;

    KvmVcpu(KvmVm vm, int id) {
        this.vm = vm;
        this.id = id;
        KickSignal.install();
        this.fd = Kvm.createVcpu(vm.fd(), id, vm.subject());
        this.subject = vm.subject() + ", vcpu " + id + " (fd " + fd + ")";
        try {
            Kvm.setCpuid2(fd, vm.hypervisor().supportedCpuid(), subject);
            this.run = Kvm.mapRun(fd, vm.hypervisor().vcpuMmapSize(), subject);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
        this.decoder = new ExitDecoder(run, vm, exits, subject);
        Arena arena = Arena.ofAuto();
        this.regsBuf = arena.allocate(KvmRegsLayout.SIZE, 8);
        this.translateBuf = arena.allocate(24, 8);
        this.sregsBuf = arena.allocate(KvmSregsLayout.SIZE, 8);
        this.localIov = arena.allocate(IovecLayout.SIZE, 8);
        this.remoteIov = arena.allocate(IovecLayout.SIZE, 8);
        this.drainer = new KickSignal.Drainer(capture);
    }

    @Override public int id() { return id; }
    @Override public KvmVm vm() { return vm; }
    public int fd() { return fd; }
    /** The mmap'ed kvm_run area. */
    public MemorySegment kvmRun() { return run; }

    @Override
    public Regs getRegs(Regs into) {
        Kvm.vcpuIoctl(capture, fd, Kvm.KVM_GET_REGS, regsBuf, "KVM_GET_REGS", subject);
        KvmStructs.readRegs(regsBuf, into);
        return into;
    }

    @Override
    public void setRegs(Regs regs) {
        KvmStructs.writeRegs(regs, regsBuf);
        Kvm.vcpuIoctl(capture, fd, Kvm.KVM_SET_REGS, regsBuf, "KVM_SET_REGS", subject);
    }

    @Override
    public Sregs getSregs() {
        Kvm.vcpuIoctl(capture, fd, Kvm.KVM_GET_SREGS, sregsBuf, "KVM_GET_SREGS", subject);
        return KvmStructs.readSregs(sregsBuf);
    }

    @Override
    public void setSregs(Sregs sregs) {
        KvmStructs.writeSregs(sregs, sregsBuf);
        Kvm.vcpuIoctl(capture, fd, Kvm.KVM_SET_SREGS, sregsBuf, "KVM_SET_SREGS", subject);
    }

    @Override
    public VcpuExit run() {
        Thread current = Thread.currentThread();
        if (current != preparedThread) prepareThread(current);
        switch (pending) {
            case PENDING_HYPERCALL -> run.set(ValueLayout.JAVA_LONG, KvmRunLayout.HYPERCALL_RET, exits.hypercall.result());
            case PENDING_SLOT_ACCESS -> {
                VcpuExit unresolved = completeSlotAccess();
                if (unresolved != null) return unresolved;
            }
            default -> { }
        }
        pending = PENDING_NONE;
        VcpuExit exit;
        do {
            runningTid = preparedTid;
            int ret = Kvm.run(capture, fd);
            runningTid = 0;
            exit = decoder.decode(ret, ret == -1 ? Libc.errno(capture) : 0);
        } while (exit == exits.internalError && retryEmulationOnce());
        if (exit == exits.interrupted) {
            BYTE.setVolatile(run, KvmRunLayout.IMMEDIATE_EXIT, (byte) 0);
            drainer.drain();
            long hva = drainer.takeHardwareError();
            long gpa = hva == -1 ? -1 : vm.gpaOfHostAddress(hva);
            if (gpa != -1) { // KVM's SIGBUS for a poisoned page (KickSignal.SIGBUS); the access kind is not known
                exits.memoryFault.fill(0, gpa & ~0xfffL, 4096, Errno.EHWPOISON, VcpuExit.MemoryFault.Origin.KERNEL);
                return exits.memoryFault;
            }
        } else if (exit == exits.hypercall) {
            pending = PENDING_HYPERCALL;
        } else if (exit == exits.internalError && unreachableFetchPage != -1) {
            long gpa = unreachableFetchPage;
            unreachableFetchPage = -1;
            int errno = vm.isPoisoned(gpa) ? Errno.EHWPOISON : Errno.EFAULT;
            exits.memoryFault.fill(MemoryFaultFlags.EXEC, gpa, 4096, errno, VcpuExit.MemoryFault.Origin.KERNEL);
            return exits.memoryFault;
        } else if (exit == exits.memoryFault) {
            VcpuExit.MemoryFault f = exits.memoryFault;
            if (f.errno() != Errno.EHWPOISON && vm.isPoisoned(f.gpa())) f.fill(f.flags(), f.gpa(), f.size(), Errno.EHWPOISON, f.origin());
            if (f.origin() == VcpuExit.MemoryFault.Origin.MMIO_IN_MEMSLOT) pending = PENDING_SLOT_ACCESS;
        }
        return exit;
    }

    private int preparedTid;
    /**
     * After an emulation failure whose instruction bytes the host can read: whether to enter once
     * more before reporting it. Another vCPU may have installed the page this one could not fetch
     * from between the failure and {@link #unreachableFetch}'s look at it (two vCPUs faulting on one
     * code page under exit delivery); the retry then runs the instruction. A failure that repeats at
     * the same rip is reported. Only on internal-error exits.
     */
    private boolean retryEmulationOnce() {
        if (exits.internalError.suberror() != VcpuExit.InternalError.SUBERROR_EMULATION || unreachableFetchPage != -1) return false;
        long gpa = unreachableFetch();
        if (gpa != -1) {
            unreachableFetchPage = gpa;   // reported below as the EXEC fault it is
            return false;
        }
        long rip = getRegs(fetchRegs).rip;
        if (rip == emulationRetryRip) {
            emulationRetryRip = -1;
            return false;
        }
        emulationRetryRip = rip;
        return true;
    }

    /**
     * After an emulation failure: the page (gpa) the next instruction's bytes lie in when the host
     * cannot read it, else -1. This machine's KVM cannot fetch an instruction from a slot page whose
     * host page fails (a poisoned one, or a missing one under a userfaultfd that fails KVM's faults:
     * exit delivery) and gives up emulating it; the fetch is then reported as the EXEC fault it is.
     * Only on internal-error exits, so the ioctls, the translation and the probe cost nothing on any
     * other path.
     */
    private long unreachableFetch() {
        long linear = getSregs().cs().base() + getRegs(fetchRegs).rip;
        long gpa = unreachablePageAt(linear);
        return gpa != -1 ? gpa : unreachablePageAt(linear + 14); // at most 15 bytes: it may cross into the next page
    }

    private long unreachablePageAt(long linear) {
        long gpa = Kvm.translate(capture, fd, linear, translateBuf, subject);
        if (gpa == -1) return -1;
        if (vm.isPoisoned(gpa)) return gpa & ~0xfffL;
        MemorySlot slot = vm.slotAt(gpa);
        if (slot == null) return -1;
        // One byte through process_vm_readv: EFAULT where the page cannot be reached, never a crash.
        localIov.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, translateBuf.address());
        localIov.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, 1);
        remoteIov.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, slot.hva(gpa));
        remoteIov.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, 1);
        return Libc.processVmReadv(capture, pid, localIov, 1, remoteIov, 1) == 1 ? -1 : gpa & ~0xfffL;
    }

    /** Blocks the kick signal in the driving thread and gives KVM the mask to run with (without it). */
    private void prepareThread(Thread current) {
        long runMask = KickSignal.blockInCallingThread();
        Kvm.setSignalMask(fd, runMask, subject);
        preparedTid = Libc.gettid();
        preparedThread = current;
    }

    /**
     * Completes the MMIO access KVM is waiting for against the memslot's host memory. Returns null
     * when done (enter the guest), or the exit to report instead of entering.
     */
    private VcpuExit completeSlotAccess() {
        long gpa = run.get(ValueLayout.JAVA_LONG, KvmRunLayout.MMIO_PHYS_ADDR);
        int len = run.get(ValueLayout.JAVA_INT, KvmRunLayout.MMIO_LEN);
        boolean write = run.get(ValueLayout.JAVA_BYTE, KvmRunLayout.MMIO_IS_WRITE) != 0;
        MemorySlot slot = vm.slotAt(gpa);
        if (slot == null) {
            // The VMM turned this range into MMIO: the access is now a device access, still awaiting completion.
            pending = PENDING_NONE;
            exits.mmio.fill(gpa, len, write, run.asSlice(KvmRunLayout.MMIO_DATA, KvmRunLayout.MMIO_DATA_SIZE));
            return exits.mmio;
        }
        localIov.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, run.address() + KvmRunLayout.MMIO_DATA);
        localIov.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, len);
        remoteIov.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, slot.hva(gpa));
        remoteIov.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, len);
        long n = write ? Libc.processVmWritev(capture, pid, localIov, 1, remoteIov, 1)
                : Libc.processVmReadv(capture, pid, localIov, 1, remoteIov, 1);
        if (n == len) return null;
        int errno = n == -1 ? Libc.errno(capture) : Errno.EFAULT;
        if (errno != Errno.EFAULT && errno != Errno.EHWPOISON) {
            throw new ErrnoException(write ? "process_vm_writev" : "process_vm_readv", errno,
                    subject + ", completing the access at gpa 0x" + Long.toHexString(gpa));
        }
        return exits.memoryFault; // still holds this fault: the memory is still unreachable
    }

    @Override
    public void kick() {
        BYTE.setVolatile(run, KvmRunLayout.IMMEDIATE_EXIT, (byte) 1);
        int tid = runningTid;
        if (tid != 0) KickSignal.send(Libc.errnoSegment(), pid, tid);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.munmap(run.address(), run.byteSize());
        Libc.close(fd);
    }

    @Override
    public String toString() {
        return "kvm " + subject;
    }
}
