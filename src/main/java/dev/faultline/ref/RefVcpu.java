package dev.faultline.ref;

import dev.faultline.hv.DescriptorTable;
import dev.faultline.hv.MemoryFaultReasons;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.ref.x86.Insn;
import dev.faultline.ref.x86.Interpreter;
import dev.faultline.ref.x86.Op;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.locks.LockSupport;

/**
 * A ref vCPU (KVM's {@code struct kvm_vcpu} plus {@code vcpu_run}).
 *
 * <h2>run()</h2>
 * Like KVM_RUN: the exit of the previous run is forgotten (no stale exit data), a pending IN or
 * MMIO read of the previous exit is completed from the data userspace left in that exit (IN writes
 * AL/AX/EAX; an MMIO read re-executes the instruction, which then finds the value), then the
 * {@link Interpreter} runs until something fills an exit. Every exit goes through
 * {@link #setExit}, which checks that only this vCPU's running thread fills it and that nothing
 * overwrites an exit already prepared in the same run unless the instruction was abandoned.
 *
 * <p>Threading: one thread at a time calls {@link #run()} and the register accessors;
 * {@link #kick()} may be called from any thread.
 */
public final class RefVcpu implements Vcpu {
    static final int MSR_TSC = 0x10, MSR_APIC_BASE = 0x1b, MSR_EFER = 0xc0000080, MSR_STAR = 0xc0000081,
            MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083, MSR_SFMASK = 0xc0000084, MSR_FS_BASE = 0xc0000100,
            MSR_GS_BASE = 0xc0000101, MSR_KERNEL_GS_BASE = 0xc0000102, MSR_TSC_AUX = 0xc0000103;

    private final RefVm vm;
    private final int id;
    private final Interpreter cpu;
    private final VcpuExit.Set exits = new VcpuExit.Set();
    /** The exit prepared during the current run; null until one is. */
    private VcpuExit exit;
    private volatile boolean kicked;
    private volatile Thread runningThread;
    /** True while this vCPU's thread may use its TLB (inside run(), outside an async-PF halt). */
    private volatile boolean inGuest;
    /** The MMU generation this vCPU has flushed its TLB for; read by {@link RefVm#flushRemoteTlbs()}. */
    private volatile int ackedMmuGeneration;
    private int seenMmuGeneration, seenCodeGeneration;

    private final MemorySegment ioBuffer = MemorySegment.ofArray(new long[1]);
    private final MemorySegment[] ioSlices = {null, ioBuffer.asSlice(0, 1), ioBuffer.asSlice(0, 2), null, ioBuffer.asSlice(0, 4)};
    private final MemorySegment mmioBuffer = MemorySegment.ofArray(new long[1]);
    private int pendingInSize;
    private boolean pendingMmioRead;
    private long pendingMmioGpa;
    private int pendingMmioLen;
    /** Values userspace supplied for MMIO reads of the instruction being re-executed. */
    private final long[] mmioGpa = new long[4], mmioVal = new long[4];
    private final int[] mmioLen = new int[4];
    private int mmioCount;
    private long mmioTag = -2;

    private Segment cs, ds, es, fs, gs, ss, tr, ldt;
    private long apicBase = 0xfee00900L, star, lstar, cstar, sfmask, tscAux;
    private int lastExceptionVector = -1;
    private long lastExceptionAddress;

    /** Runs of this vCPU so far; a memory-fault exit remembers the run that filled it (stale-data audit). */
    private long runSerial, memoryFaultRun = -1;
    /** A memory fault whose reason is not opted in: the run fails with this errno and no exit data. */
    private int bareErrno;
    private long bareReason;
    /** Test hook: the next run ends in a bare errno for this reason, as a buggy fault path would. */
    private int forcedBareErrno;
    private long forcedBareReason;
    private boolean pendingHypercall;

    static final int ASYNC_IDLE = 0, ASYNC_PENDING = 1, ASYNC_DONE = 2, ASYNC_FAILED = 3;
    /** Asynchronous page fault of this vCPU: its state, page and waiting thread (shared with the VM's worker). */
    volatile int asyncState;
    volatile long asyncGpa;
    volatile Thread asyncWaiter;
    /** The gfn whose background resolution failed (seed 004's error_gfn): its next fault is synchronous. */
    private long asyncErrorGfn = -1;
    private long asyncAttempts;

    RefVcpu(RefVm vm, int id) {
        this.vm = vm;
        this.id = id;
        this.cpu = new Interpreter(vm, this);
        cpu.reset();
        Segment flat = new Segment(0, 0xffff, 0, 3, true, 0, false, true, false, false, false, false);
        cs = new Segment(0xffff0000L, 0xffff, 0xf000, 0xb, true, 0, false, true, false, false, false, false);
        ds = es = fs = gs = ss = flat;
        tr = new Segment(0, 0xffff, 0, 0xb, true, 0, false, false, false, false, false, false);
        ldt = Segment.unusableLdt();
        seenMmuGeneration = vm.mmuGeneration();
        seenCodeGeneration = vm.codeGeneration();
    }

    @Override public int id() { return id; }
    @Override public Vm vm() { return vm; }

    /** Instructions retired by this vCPU since it was created. */
    public long instructionsRetired() { return cpu.retired; }

    /** The vector of the last guest exception (which ended the run as a shutdown), or -1. */
    public int lastExceptionVector() { return lastExceptionVector; }

    /** The faulting address or RIP of the last guest exception. */
    public long lastExceptionAddress() { return lastExceptionAddress; }

    /** Background resolutions this vCPU started (asynchronous page faults); each one is followed by a retry of the access. */
    public long asyncPageFaultAttempts() { return asyncAttempts; }

    /** Whether the VM has private memory (the encryption bit exists; CPUID leaf 0x8000001F). */
    public boolean privateMemory() { return vm.privateCapable; }

    // ---------------------------------------------------------------- run

    @Override
    public VcpuExit run() {
        if (vm.isClosed()) throw new ErrnoException("KVM_RUN", Errno.EBADF, "ref vcpu " + id, "VM closed");
        runningThread = Thread.currentThread();
        exit = null;          // kvm_run.exit_reason is reset at every entry: nothing stale survives
        bareErrno = 0;
        runSerial++;
        try {
            enterGuest();
            completePending();
            if (forcedBareErrno != 0) {
                bareErrno = forcedBareErrno;
                bareReason = forcedBareReason;
                forcedBareErrno = 0;
            } else if (!pollEvents()) {
                cpu.execute();
            }
            if (bareErrno != 0) return failBare();
            if (exit == null) throw new AssertionError("ref vcpu " + id + ": run ended without an exit");
            if (exit == exits.memoryFault && memoryFaultRun != runSerial) {
                throw new AssertionError("ref vcpu " + id + ": a memory-fault exit from an earlier run would be returned again (stale data)");
            }
            return exit;
        } finally {
            inGuest = false;
            runningThread = null;
        }
    }

    Thread runningThread() { return runningThread; }
    boolean inGuest() { return inGuest; }
    int ackedMmuGeneration() { return ackedMmuGeneration; }

    /** Announces that this thread will use the TLB, then catches up with every MMU change made so far. */
    private void enterGuest() {
        inGuest = true;
        catchUpWithMmu();
    }

    /** Flushes this vCPU's TLB and decoded code if the VM's MMU changed since it last looked, and says it has seen it. */
    private void catchUpWithMmu() {
        int g = vm.mmuGeneration();
        if (g != seenMmuGeneration) {
            seenMmuGeneration = g;
            cpu.mmu.flush();
            cpu.flushCode();
        }
        if (ackedMmuGeneration != g) ackedMmuGeneration = g; // a volatile write only when it changes (this runs between pages)
    }

    /**
     * KVM_RUN fails with a bare errno and no memory-fault data: only for a reason userspace did not opt
     * into. Where the design says the exit must be filled (the reason is enabled), that is a bug, and it
     * fails loudly instead of handing userspace an EFAULT with a stale exit reason.
     */
    private VcpuExit failBare() {
        if (vm.memoryFaultReasonEnabled(bareReason)) {
            throw new AssertionError("ref vcpu " + id + ": KVM_RUN would fail with a bare " + Errno.name(bareErrno)
                    + " although memory-fault exits are enabled for reason " + MemoryFaultReasons.describe(bareReason));
        }
        throw new ErrnoException("KVM_RUN", bareErrno, "ref vcpu " + id, "memory fault without exit data: reason "
                + MemoryFaultReasons.describe(bareReason) + " is not enabled (FAULTLINE_MEMORY_FAULT_EXIT = 0x"
                + Long.toHexString(vm.memoryFaultReasons()) + "), so kvm_run.exit_reason is stale");
    }

    private void completePending() {
        if (pendingHypercall) {
            pendingHypercall = false;
            cpu.r[0] = exits.hypercall.result();
        }
        if (pendingInSize != 0) {
            long v = switch (pendingInSize) {
                case 1 -> ioBuffer.get(ValueLayout.JAVA_BYTE, 0) & 0xffL;
                case 2 -> ioBuffer.get(ValueLayout.JAVA_SHORT_UNALIGNED, 0) & 0xffffL;
                default -> ioBuffer.get(ValueLayout.JAVA_INT_UNALIGNED, 0) & 0xffffffffL;
            };
            cpu.setReg(pendingInSize, 0, v);
            pendingInSize = 0;
        }
        if (pendingMmioRead) {
            pendingMmioRead = false;
            long v = mmioBuffer.get(ValueLayout.JAVA_LONG_UNALIGNED, 0) & dev.faultline.ref.x86.CpuState.mask(pendingMmioLen);
            if (mmioTag != cpu.retired) mmioCount = 0;
            mmioTag = cpu.retired;
            if (mmioCount < mmioGpa.length) {
                mmioGpa[mmioCount] = pendingMmioGpa;
                mmioLen[mmioCount] = pendingMmioLen;
                mmioVal[mmioCount] = v;
                mmioCount++;
            }
        }
    }

    /** Checks kicks and VM-wide changes; returns true when that produced an exit. Called between pages. */
    public boolean pollEvents() {
        if (kicked) {
            kicked = false;
            setExit(exits.interrupted, false);
            return true;
        }
        catchUpWithMmu();
        int c = vm.codeGeneration();
        if (c != seenCodeGeneration) {
            seenCodeGeneration = c;
            cpu.mmu.flushWrites();
        }
        return false;
    }

    @Override
    public void kick() { kicked = true; }

    /** True once the run has an exit prepared, or must fail with a bare errno. */
    public boolean exitReady() { return exit != null || bareErrno != 0; }

    /**
     * The one place an exit is filled. Only this vCPU's running thread may fill it (anything else is a
     * bug that would corrupt the exit of a running vCPU), and an exit already prepared in this run may
     * only be replaced when the instruction that prepared it is abandoned ({@code override}).
     */
    private void setExit(VcpuExit e, boolean override) {
        if (runningThread != Thread.currentThread()) {
            throw new AssertionError("ref vcpu " + id + ": exit " + e.reason() + " filled by " + Thread.currentThread().getName()
                    + ", not by the vCPU's running thread");
        }
        if (exit != null && !override) {
            throw new AssertionError("ref vcpu " + id + ": exit " + e.reason() + " would overwrite exit " + exit.reason()
                    + " prepared in the same run");
        }
        exit = e;
    }

    // ---------------------------------------------------------------- memory faults

    /**
     * KVM_EXIT_MEMORY_FAULT for the page at {@code gpaPage} (size one page): the instruction is abandoned
     * and re-executed on the next run, so an access completes exactly once after userspace resolved it.
     * The exit is filled only together with EFAULT or EHWPOISON, and only when {@code reason} is opted in;
     * otherwise the run fails with the bare errno.
     */
    public void memoryFault(long flags, long gpaPage, int errno, long reason) {
        if (errno != Errno.EFAULT && errno != Errno.EHWPOISON) {
            throw new AssertionError("ref vcpu " + id + ": memory-fault data with errno " + Errno.name(errno) + " (only EFAULT/EHWPOISON carry it)");
        }
        if (!vm.memoryFaultReasonEnabled(reason)) {
            bareErrno = errno;
            bareReason = reason;
            throw ExitSignal.INSTANCE;
        }
        exits.memoryFault.fill(flags, gpaPage, 4096, errno, VcpuExit.MemoryFault.Origin.KERNEL);
        setExit(exits.memoryFault, false);
        memoryFaultRun = runSerial;
        throw ExitSignal.INSTANCE;
    }

    /**
     * An access to a missing page of an exit-on-missing slot. With asynchronous page faults on, the page
     * is handed to the VM's background worker and this vCPU waits for it (KVM's artificial halt: this
     * guest has no async-PF protocol to run something else meanwhile; other vCPUs run on; a kick ends
     * the wait), then retries the instruction. A gfn whose background resolution failed is handled
     * synchronously the next time (seed 004's error_gfn): the memory-fault exit reaches userspace, so
     * the access is retried at most once in the background. Without async, the exit is immediate.
     */
    public void missingPage(long flags, long gpaPage) {
        long gfn = gpaPage >>> 12;
        if (vm.asyncEnabled() && gfn != asyncErrorGfn && asyncState != ASYNC_PENDING) {
            asyncAttempts++;
            asyncWaiter = Thread.currentThread();
            asyncGpa = gpaPage;
            asyncState = ASYNC_PENDING;
            vm.submitAsync();
            inGuest = false;  // halted: no translation is used while waiting, so remote flushes need not wait for us
            while (asyncState == ASYNC_PENDING && !kicked) LockSupport.parkNanos(this, 100_000);
            enterGuest();
            int st = asyncState;
            if (st == ASYNC_FAILED && !vm.asyncNaive()) asyncErrorGfn = gfn;
            if (st != ASYNC_PENDING) asyncState = ASYNC_IDLE;
            throw ExitSignal.INSTANCE;   // no exit: the instruction is retried (or the kick is seen)
        }
        if (gfn == asyncErrorGfn) asyncErrorGfn = -1;
        memoryFault(flags, gpaPage, Errno.EFAULT, MemoryFaultReasons.MISSING);
    }

    /**
     * vmcall/vmmcall. KVM_HC_MAP_GPA_RANGE (rbx = gpa, rcx = pages, rdx = attributes) exits to userspace
     * when KVM_CAP_EXIT_HYPERCALL enabled it, after upstream's checks (a misaligned gpa, no pages or a
     * wrapping range give -KVM_EINVAL without an exit); userspace's result lands in RAX on the next run.
     * Every other hypercall returns -KVM_ENOSYS.
     */
    public void hypercall() {
        long nr = cpu.r[0];
        if (nr == VcpuExit.Hypercall.KVM_HC_MAP_GPA_RANGE && vm.hypercallExits(nr)) {
            long gpa = cpu.r[3], npages = cpu.r[1], attrs = cpu.r[2];
            if ((gpa & 0xfff) != 0 || npages == 0 || (gpa >>> 12) + npages <= (gpa >>> 12)) {
                cpu.r[0] = -PrivateMemory.KVM_EINVAL;
                return;
            }
            exits.hypercall.fill(nr, gpa, npages, attrs, 0, 0, 0, PrivateMemory.EXIT_HYPERCALL_LONG_MODE);
            setExit(exits.hypercall, false);
            pendingHypercall = true;
            cpu.requestStop();
            return;
        }
        cpu.r[0] = -PrivateMemory.KVM_ENOSYS;
    }

    /**
     * Fault injection for audits (tests, the stale-data scenario): fills a memory-fault exit from the
     * calling thread, as a buggy fault path on another thread would. It fails with an AssertionError
     * unless called inside a run on the vCPU's own thread with no exit prepared.
     */
    public void fillMemoryFaultFromThisThread(long flags, long gpa) {
        exits.memoryFault.fill(flags, gpa, 4096, Errno.EFAULT, VcpuExit.MemoryFault.Origin.KERNEL);
        setExit(exits.memoryFault, false);
    }

    /**
     * Fault injection for audits: one run in which {@code hook} runs on the vCPU's thread after the interpreter stopped,
     * as a fault path that fills the exit late would.
     */
    public VcpuExit runWithHookAfterExecute(Runnable hook) {
        runningThread = Thread.currentThread();
        exit = null;
        bareErrno = 0;
        runSerial++;
        try {
            completePending();
            if (!pollEvents()) cpu.execute();
            try {
                hook.run();
            } catch (ExitSignal e) {
                // a fault path unwinding: the exit it filled is what the run returns
            }
            return exit;
        } finally {
            runningThread = null;
        }
    }

    /** Fault injection for audits: the next run fails with a bare {@code errno} for {@code reason}, as an un-annotated fault path would. */
    public void forceBareFaultOnNextRun(int errno, long reason) {
        forcedBareErrno = errno;
        forcedBareReason = reason;
    }

    // ---------------------------------------------------------------- exits the interpreter and MMU raise

    public void halt() {
        setExit(exits.hlt, false);
        cpu.requestStop();
    }

    public void portOut(int port, int size, long value) {
        ioBuffer.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, value & dev.faultline.ref.x86.CpuState.mask(size));
        exits.io.fill(VcpuExit.Io.DIR_OUT, size, port, 1, ioSlices[size]);
        setExit(exits.io, false);
        cpu.requestStop();
    }

    public void portIn(int port, int size) {
        ioBuffer.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0);
        exits.io.fill(VcpuExit.Io.DIR_IN, size, port, 1, ioSlices[size]);
        setExit(exits.io, false);
        pendingInSize = size;
        cpu.requestStop();
    }

    /**
     * A read of {@code size} bytes at a gpa without memslot: the value userspace supplied if this is the
     * re-execution after the MMIO exit, else an MMIO read exit (the instruction is abandoned).
     */
    public long mmioRead(long gpa, int size) {
        if (mmioTag + 1 == cpu.retired) {
            for (int i = 0; i < mmioCount; i++) {
                if (mmioGpa[i] == gpa && mmioLen[i] == size) return mmioVal[i];
            }
        }
        mmioBuffer.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0);
        exits.mmio.fill(gpa, size, false, mmioBuffer);
        setExit(exits.mmio, true);
        pendingMmioRead = true;
        pendingMmioGpa = gpa;
        pendingMmioLen = size;
        throw ExitSignal.INSTANCE;
    }

    /** A rep string iteration completed: values supplied for earlier iterations are spent. */
    public void stringIterationDone() { mmioCount = 0; }

    /** A write to a gpa without memslot (or to a read-only memslot): the instruction completes, then the run exits. */
    public void mmioWrite(long gpa, int size, long value) {
        if (exit != null) emulationFailure("a second MMIO write in one instruction at gpa 0x" + Long.toHexString(gpa));
        mmioBuffer.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, value & dev.faultline.ref.x86.CpuState.mask(size));
        exits.mmio.fill(gpa, size, true, mmioBuffer);
        setExit(exits.mmio, false);
        cpu.requestStop();
    }

    /**
     * A guest exception. faultline guests run without an IDT, so every exception escalates to a double
     * and then a triple fault, which KVM reports as a shutdown exit: that is what this does.
     */
    public void raiseException(int vector, int errorCode, long address) {
        lastExceptionVector = vector;
        lastExceptionAddress = address;
        setExit(exits.shutdown, true);
        throw ExitSignal.INSTANCE;
    }

    /** An instruction the emulator cannot perform: KVM_EXIT_INTERNAL_ERROR, suberror 1 (emulation failure). */
    public void emulationFailure(String why) {
        fillEmulationFailure(null, why);
        throw ExitSignal.INSTANCE;
    }

    /** A valid instruction outside the supported subset. */
    public void unsupportedInstruction(Insn in) {
        fillEmulationFailure(in.bytes, "unsupported instruction" + (in.why == null ? "" : " (" + in.why + ")"));
        throw ExitSignal.INSTANCE;
    }

    /**
     * A page-table page of the guest lies outside every memslot. Reported as an emulation failure that
     * names the page-table gpa; the memory-fault mechanisms turn it into a memory-fault exit.
     */
    public void pageTableOutsideMemory(long pteGpa, long va) {
        emulationFailure("page walk for va 0x" + Long.toHexString(va) + " reads its page table at gpa 0x"
                + Long.toHexString(pteGpa) + ", outside every memslot");
    }

    private final long[] words = new long[3];

    /**
     * Data words as KVM's emulation_failure: [0] flags (1 = instruction bytes valid), [1] insn_size in the
     * low byte then bytes 0..6, [2] bytes 7..14.
     */
    private void fillEmulationFailure(byte[] bytes, String why) {
        StringBuilder hex = new StringBuilder();
        java.util.Arrays.fill(words, 0);
        if (bytes != null) {
            words[0] = 1;
            words[1] = bytes.length;
            for (int i = 0; i < bytes.length; i++) {
                int pos = i + 1;
                words[1 + pos / 8] |= (bytes[i] & 0xffL) << (8 * (pos % 8));
                hex.append(String.format("%02x", bytes[i] & 0xff));
                if (i + 1 < bytes.length) hex.append(' ');
            }
        }
        String detail = why + " at rip 0x" + Long.toHexString(cpu.insnStart) + (bytes == null ? "" : ": " + hex);
        exits.internalError.fill(VcpuExit.InternalError.SUBERROR_EMULATION, words, 3, detail);
        setExit(exits.internalError, true);
    }

    // ---------------------------------------------------------------- memory bookkeeping for the MMU

    /**
     * A guest write (or a page-walk A/D update) is about to modify [{@code gpa}, {@code gpa + size}) in
     * {@code slot}: decoded code on the lines it touches is invalidated, and the page is logged dirty.
     */
    public void onWrite(RefMemslot slot, long gpa, int size) {
        int page = slot.pageIndex(gpa);
        if (slot.codeMark[page] != 0 && (slot.codeLines[page] & RefMemslot.lines((int) gpa & 0xfff, size)) != 0) {
            vm.invalidateCode(slot, page);
            if ((gpa & ~0xfffL) == cpu.currentCodePage()) cpu.requestStop();
        }
        if (slot.logDirty) vm.markDirty(slot, page);
    }

    /** True when the next write to this page must be logged first (dirty logging). */
    public boolean isDirtyTracked(RefMemslot slot, long gpaPage) {
        return slot.logDirty && !slot.isDirty(slot.pageIndex(gpaPage));
    }

    /** Code of this page is about to be decoded: writes to it must come to the slow path from now on. */
    public void markCode(RefMemslot slot, int pageIndex, long gpaPage) {
        vm.markCode(slot, pageIndex);
        cpu.mmu.flushWritesTo(gpaPage);
    }

    // ---------------------------------------------------------------- MSRs and control registers

    public long readMsr(int msr) {
        return switch (msr) {
            case MSR_TSC -> cpu.tsc + cpu.retired;
            case MSR_APIC_BASE -> apicBase;
            case MSR_EFER -> cpu.efer;
            case MSR_STAR -> star;
            case MSR_LSTAR -> lstar;
            case MSR_CSTAR -> cstar;
            case MSR_SFMASK -> sfmask;
            case MSR_FS_BASE -> cpu.fsBase;
            case MSR_GS_BASE -> cpu.gsBase;
            case MSR_KERNEL_GS_BASE -> cpu.kernelGsBase;
            case MSR_TSC_AUX -> tscAux;
            default -> { raiseException(Op.GP, 0, cpu.insnStart); yield 0; }
        };
    }

    public void writeMsr(int msr, long v) {
        switch (msr) {
            case MSR_TSC -> cpu.tsc = v - cpu.retired;
            case MSR_APIC_BASE -> apicBase = v;
            case MSR_EFER -> {
                long allowed = Sregs.EFER_SCE | Sregs.EFER_LME | Sregs.EFER_LMA | Sregs.EFER_NXE;
                if ((v & ~allowed) != 0) raiseException(Op.GP, 0, cpu.insnStart);
                cpu.efer = (v & ~Sregs.EFER_LMA) | (cpu.efer & Sregs.EFER_LMA);
                cpu.mmu.flush();
            }
            case MSR_STAR -> star = v;
            case MSR_LSTAR -> lstar = v;
            case MSR_CSTAR -> cstar = v;
            case MSR_SFMASK -> sfmask = v;
            case MSR_FS_BASE -> cpu.fsBase = v;
            case MSR_GS_BASE -> cpu.gsBase = v;
            case MSR_KERNEL_GS_BASE -> cpu.kernelGsBase = v;
            case MSR_TSC_AUX -> tscAux = v & 0xffffffffL;
            default -> raiseException(Op.GP, 0, cpu.insnStart);
        }
    }

    /** MOV to CRn. Leaving long mode is not supported: clearing CR0.PG or CR4.PAE raises #GP. */
    public void writeCr(int n, long v) {
        switch (n) {
            case 0 -> {
                if ((v >>> 32) != 0 || (v & Sregs.CR0_PG) == 0 || (v & Sregs.CR0_PE) == 0) raiseException(Op.GP, 0, cpu.insnStart);
                cpu.cr0 = v | Sregs.CR0_ET;
                cpu.mmu.flush();
            }
            case 2 -> cpu.cr2 = v;
            case 3 -> { cpu.cr3 = v; cpu.mmu.flush(); }
            case 4 -> {
                if ((v & Sregs.CR4_PAE) == 0 || (v & ~0x3fffffL) != 0) raiseException(Op.GP, 0, cpu.insnStart);
                cpu.cr4 = v;
                cpu.mmu.flush();
            }
            default -> {
                if ((v & ~0xfL) != 0) raiseException(Op.GP, 0, cpu.insnStart);
                cpu.cr8 = v;
            }
        }
    }

    // ---------------------------------------------------------------- registers

    @Override
    public Regs getRegs(Regs into) {
        System.arraycopy(cpu.r, 0, into.gpr, 0, 16);
        into.rip = cpu.rip;
        into.rflags = cpu.rflags();
        return into;
    }

    @Override
    public void setRegs(Regs regs) {
        System.arraycopy(regs.gpr, 0, cpu.r, 0, 16);
        cpu.rip = regs.rip;
        cpu.setRflags(regs.rflags);
    }

    @Override
    public Sregs getSregs() {
        return new Sregs(cs, ds, es, withBase(fs, cpu.fsBase), withBase(gs, cpu.gsBase), ss, tr, ldt,
                new DescriptorTable(cpu.gdtBase, cpu.gdtLimit), new DescriptorTable(cpu.idtBase, cpu.idtLimit),
                cpu.cr0, cpu.cr2, cpu.cr3, cpu.cr4, cpu.cr8, cpu.efer, apicBase);
    }

    private static Segment withBase(Segment s, long base) {
        return s.base() == base ? s : new Segment(base, s.limit(), s.selector(), s.type(), s.present(), s.dpl(), s.db(),
                s.s(), s.l(), s.g(), s.avl(), s.unusable());
    }

    @Override
    public void setSregs(Sregs s) {
        cs = s.cs(); ds = s.ds(); es = s.es(); fs = s.fs(); gs = s.gs(); ss = s.ss(); tr = s.tr(); ldt = s.ldt();
        cpu.fsBase = s.fs().base();
        cpu.gsBase = s.gs().base();
        cpu.gdtBase = s.gdt().base();
        cpu.gdtLimit = s.gdt().limit();
        cpu.idtBase = s.idt().base();
        cpu.idtLimit = s.idt().limit();
        cpu.cr0 = s.cr0();
        cpu.cr2 = s.cr2();
        cpu.cr3 = s.cr3();
        cpu.cr4 = s.cr4();
        cpu.cr8 = s.cr8();
        cpu.efer = s.efer();
        apicBase = s.apicBase();
        cpu.mmu.flush();
        cpu.flushCode();
    }

    @Override
    public void close() { }

    @Override
    public String toString() { return "ref vcpu " + id; }
}
