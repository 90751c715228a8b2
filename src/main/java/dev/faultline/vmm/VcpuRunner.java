package dev.faultline.vmm;

import dev.faultline.guest.BootProtocol;
import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.io.PrintStream;
import java.util.Arrays;

/**
 * The run loop of one vCPU, on that vCPU's own thread: enter the guest, dispatch the exit, repeat.
 * Allocation-free per exit unless the exit log is on (then one record per logged exit).
 *
 * <p>Guards against the infinite loop the memory-fault API warns about: a fault at the same gpa with
 * the same flags that comes back more than {@link #MAX_SAME_FAULT} times in a row, with no other exit
 * between, stops the vCPU as unresolvable.
 */
final class VcpuRunner implements Runnable {
    static final int MAX_SAME_FAULT = 8;
    /** Value a read from an address with no device returns (an absent bus reads as all ones). */
    static final long UNCLAIMED_MMIO_READ = -1L;

    private final int index;
    private final Vcpu vcpu;
    private final MemoryFaultHandler faultHandler;
    private final ExitLog log;
    private final ExitStats stats = new ExitStats();
    private final StringBuilder console = new StringBuilder();
    private final PrintStream consoleEcho;
    private volatile boolean stopRequested;
    private String stopReason = "stopped";

    private long[] reports = new long[8];
    private int reportCount;
    private long lastFaultGpa = -1, lastFaultFlags;
    private int sameFaultCount;

    private VcpuOutcome outcome;
    private long doneCode;
    private String detail = "";
    private long runNanos;
    private Regs finalRegs;

    VcpuRunner(int index, Vcpu vcpu, MemoryFaultHandler faultHandler, int exitLogLimit, PrintStream consoleEcho) {
        this.index = index;
        this.vcpu = vcpu;
        this.faultHandler = faultHandler;
        this.log = new ExitLog(exitLogLimit);
        this.consoleEcho = consoleEcho;
    }

    /** Any thread: asks the loop to end at the next exit, kicking the vCPU out of the guest. */
    void requestStop(String reason) {
        stopReason = reason;
        stopRequested = true;
        vcpu.kick();
        synchronized (pauseLock) {
            pauseLock.notifyAll();
        }
    }

    // ---- pause and resume -------------------------------------------------------------------
    // A pause leaves the guest at an instruction boundary with no I/O or MMIO completion pending
    // (a kicked KVM_RUN completes it before returning EINTR), captures this vCPU's registers on its
    // own thread, and parks the thread until resume or stop.

    private final Object pauseLock = new Object();
    private volatile boolean pauseRequested;
    private boolean parked;
    private VcpuState pausedState;

    /** Any thread: asks the vCPU to pause at the next exit. */
    void requestPause() {
        pauseRequested = true;
        vcpu.kick();
    }

    /** Any thread: waits until the vCPU is parked (true) or has finished (false). */
    boolean awaitParked(long timeoutNanos) throws InterruptedException {
        long deadline = System.nanoTime() + timeoutNanos;
        synchronized (pauseLock) {
            while (!parked && !finished) {
                long left = deadline - System.nanoTime();
                if (left <= 0) throw new IllegalStateException("vCPU " + index + " did not pause within the timeout");
                pauseLock.wait(left / 1_000_000 + 1);
            }
            return parked;
        }
    }

    /** The registers captured when the vCPU parked. */
    VcpuState pausedState() {
        synchronized (pauseLock) {
            return pausedState;
        }
    }

    /** Any thread: lets a parked vCPU enter the guest again. */
    void resume() {
        synchronized (pauseLock) {
            pauseRequested = false;
            pauseLock.notifyAll();
        }
    }

    /** Drains pending completions with one immediate-exit run, then parks. False when an exit came first. */
    private boolean pauseHere() {
        vcpu.kick();
        VcpuExit exit = vcpu.run();
        if (!(exit instanceof VcpuExit.Interrupted)) {
            dispatch(exit);
            return false;
        }
        VcpuState state = new VcpuState(vcpu.getRegs(), vcpu.getSregs());
        synchronized (pauseLock) {
            pausedState = state;
            parked = true;
            pauseLock.notifyAll();
            try {
                while (pauseRequested && !stopRequested) pauseLock.wait();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                stopRequested = true;
            } finally {
                parked = false;
            }
        }
        return true;
    }

    private volatile boolean finished;

    // ---- a pause point: pause the machine right after this vCPU's n-th guest exit ------------
    private long guestExits;
    private long pauseAtExit = -1;
    private Runnable atPausePoint;

    /** Before the thread starts: after the {@code n}-th guest exit is handled, pause here and run {@code reached}. */
    void pauseAtExit(long n, Runnable reached) {
        if (n < 1) throw new IllegalArgumentException("a pause point is an exit number from 1, got " + n);
        pauseAtExit = n;
        atPausePoint = reached;
    }

    /**
     * Exits of the guest's own doing (kicks not counted). Written only by the vCPU thread; exact for
     * another thread once {@link #awaitParked} returned (parking and finishing publish it).
     */
    long guestExits() { return guestExits; }

    boolean hasFinished() { return finished; }

    @Override
    public void run() {
        long start = System.nanoTime();
        try {
            loop();
        } catch (ErrnoException e) {
            finish(VcpuOutcome.ERROR, e.getMessage());
        } catch (RuntimeException e) {
            finish(VcpuOutcome.ERROR, e.toString());
        } finally {
            runNanos = System.nanoTime() - start;
            try {
                finalRegs = vcpu.getRegs();
            } catch (RuntimeException e) {
                finalRegs = new Regs();
                detail = detail + " (registers unreadable: " + e.getMessage() + ")";
            }
            synchronized (pauseLock) {
                finished = true;
                pauseLock.notifyAll();
            }
        }
    }

    private void loop() {
        while (outcome == null) {
            if (stopRequested) {
                finish(VcpuOutcome.STOPPED, stopReason);
                return;
            }
            if (pauseRequested) {
                pauseHere();
                continue;
            }
            dispatch(vcpu.run());
        }
    }

    private void dispatch(VcpuExit exit) {
        stats.count(exit.reason());
        if (!(exit instanceof VcpuExit.Interrupted)) countGuestExit();
        boolean logging = log.wantsMore();
        String resolution = null;
        switch (exit) {
            case VcpuExit.Io io -> handleIo(io);
            case VcpuExit.Mmio mmio -> {
                if (!mmio.isWrite()) mmio.completeRead(UNCLAIMED_MMIO_READ);
                sameFaultCount = 0;
            }
            case VcpuExit.Hlt h -> finish(VcpuOutcome.HALTED, "hlt");
            case VcpuExit.MemoryFault fault -> resolution = handleMemoryFault(fault);
            case VcpuExit.Interrupted i -> { /* loop head checks stopRequested */ }
            case VcpuExit.Shutdown s -> finish(VcpuOutcome.SHUTDOWN, "shutdown exit (triple fault)");
            case VcpuExit.InternalError ie -> finish(VcpuOutcome.INTERNAL_ERROR,
                    "internal error, suberror " + ie.suberror() + (ie.detail().isEmpty() ? "" : ": " + ie.detail()));
            case VcpuExit.FailEntry fe -> finish(VcpuOutcome.FAIL_ENTRY,
                    "entry failed, hardware reason 0x" + Long.toHexString(fe.hardwareReason()));
            case VcpuExit.Hypercall hc -> {
                resolution = faultHandler.hypercall(index, hc);
                if (resolution == null) hc.complete(-1000); // -KVM_ENOSYS: not handled
                sameFaultCount = 0;
            }
            case VcpuExit.Unknown u -> finish(VcpuOutcome.UNHANDLED_EXIT, "unhandled exit reason " + u.reason());
        }
        // A kick is the VMM's own doing, not the guest's: counted, but kept out of the exit log.
        if (logging && !(exit instanceof VcpuExit.Interrupted)) log.add(exit.record(), resolution);
    }

    private void countGuestExit() {
        if (++guestExits == pauseAtExit) {
            pauseRequested = true;
            atPausePoint.run();
        }
    }

    private void handleIo(VcpuExit.Io io) {
        sameFaultCount = 0;
        int port = io.port();
        if (!io.isOut()) {
            io.completeIn(0);
            return;
        }
        switch (port) {
            case BootProtocol.PORT_CONSOLE -> {
                for (int i = 0; i < io.count(); i++) {
                    char c = (char) (io.data().get(java.lang.foreign.ValueLayout.JAVA_BYTE, (long) i * io.size()) & 0xff);
                    console.append(c);
                    if (consoleEcho != null) consoleEcho.print(c);
                }
            }
            case BootProtocol.PORT_REPORT -> {
                if (reportCount == reports.length) reports = Arrays.copyOf(reports, reports.length * 2);
                reports[reportCount++] = io.value();
            }
            case BootProtocol.PORT_DONE -> {
                doneCode = io.value();
                finish(VcpuOutcome.DONE, "done with code " + doneCode);
            }
            default -> { /* writes to ports without a device are ignored, as on a real bus */ }
        }
    }

    private String handleMemoryFault(VcpuExit.MemoryFault fault) {
        if (fault.gpa() == lastFaultGpa && fault.flags() == lastFaultFlags) {
            sameFaultCount++;
        } else {
            lastFaultGpa = fault.gpa();
            lastFaultFlags = fault.flags();
            sameFaultCount = 1;
        }
        if (sameFaultCount > MAX_SAME_FAULT) {
            finish(VcpuOutcome.UNRESOLVED_MEMORY_FAULT, describe(fault) + " came back " + MAX_SAME_FAULT
                    + " times after being resolved; stopping instead of retrying forever");
            return "stopped: repeated";
        }
        String failure = faultHandler.resolve(index, fault);
        if (failure == null) return faultHandler.lastResolution(index);
        finish(VcpuOutcome.UNRESOLVED_MEMORY_FAULT, describe(fault) + ": " + failure);
        return "stopped: " + failure;
    }

    static String describe(VcpuExit.MemoryFault f) {
        return String.format("memory fault at gpa 0x%x size 0x%x flags %s (%s), %s", f.gpa(), f.size(),
                "0x" + Long.toHexString(f.flags()), MemoryFaultFlags.describe(f.flags()), Errno.describe(f.errno()));
    }

    private void finish(VcpuOutcome o, String why) {
        if (outcome != null) return;
        outcome = o;
        detail = why;
    }

    VcpuResult result() {
        return new VcpuResult(index, outcome == null ? VcpuOutcome.STOPPED : outcome, doneCode, detail, finalRegs,
                log, stats.asMap(), Arrays.copyOf(reports, reportCount), console.toString(), runNanos);
    }

    ExitStats stats() { return stats; }

    boolean failed() { return outcome != null && !outcome.isClean(); }
}
