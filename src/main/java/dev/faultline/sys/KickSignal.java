package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The signal that kicks a vCPU thread out of KVM_RUN, done the way that needs no Java code in signal
 * context:
 *
 * <ul>
 * <li>its disposition is SIG_IGN (set once per process). An ignored signal is normally discarded
 *     when sent, so it could not interrupt anything; but the kernel never discards a signal that the
 *     target thread blocks (kernel/signal.c: sig_ignored() is false for blocked signals);</li>
 * <li>every vCPU thread blocks it ({@link #blockInCallingThread}) and hands KVM a run-time mask
 *     without it (KVM_SET_SIGNAL_MASK). Inside KVM_RUN the signal is unblocked but, because KVM
 *     keeps the thread's own mask as "real_blocked", still queued: KVM sees it pending and returns
 *     EINTR. Back in userspace it is blocked again, never delivered, and {@link #drain} consumes it.</li>
 * </ul>
 *
 * A no-op handler installed through an FFM upcall would also work but runs Java in a signal
 * handler, which is not async-signal-safe (the JVM may be anywhere in that thread); SIG_IGN on
 * its own does not interrupt KVM_RUN at all.
 */
public final class KickSignal {
    private KickSignal() {}

    /** SIGRTMIN+6 with glibc (SIGRTMIN is 34): no JVM or glibc use. */
    public static final int SIGNAL = 40;
    /** The signal's bit in a 64-bit kernel sigset. */
    public static final long MASK_BIT = 1L << (SIGNAL - 1);
    /**
     * SIGBUS, blocked in vCPU threads the same way: where KVM answers a guest access to a
     * hardware-poisoned host page with SIGBUS to the vCPU thread (kvm_send_hwpoison_signal, upstream
     * KVM on hardware), it then ends KVM_RUN with EINTR like a kick and is taken by
     * {@link Drainer#takeHardwareError} instead of reaching the JVM, whose handler would end the process.
     * A SIGBUS forced by a fault of the thread's own code still is delivered (the kernel unblocks it).
     */
    public static final int SIGBUS = 7;
    public static final long SIGBUS_BIT = 1L << (SIGBUS - 1);
    /** si_code of a SIGBUS for a poisoned page: action required (an access hit it) and action optional. */
    public static final int BUS_MCEERR_AR = 4, BUS_MCEERR_AO = 5;

    private static volatile boolean installed;

    /**
     * Sets the kick signal's disposition to SIG_IGN once per process.
     * @throws IllegalStateException when some other code installed a handler for it
     */
    public static synchronized void install() {
        if (installed) return;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment old = a.allocate(SigactionLayout.SIZE, 8);
            Libc.check(Libc.sigaction(SIGNAL, MemorySegment.NULL, old), "sigaction", "signal " + SIGNAL);
            long handler = old.get(ValueLayout.JAVA_LONG, SigactionLayout.HANDLER);
            if (handler != Libc.SIG_DFL && handler != Libc.SIG_IGN) {
                throw new IllegalStateException("signal " + SIGNAL + " (the vCPU kick signal) already has a handler at 0x"
                        + Long.toHexString(handler) + "; faultline needs it for KVM_RUN interruption");
            }
            MemorySegment act = a.allocate(SigactionLayout.SIZE, 8);
            act.set(ValueLayout.JAVA_LONG, SigactionLayout.HANDLER, Libc.SIG_IGN);
            Libc.check(Libc.sigaction(SIGNAL, act, MemorySegment.NULL), "sigaction(SIG_IGN)", "signal " + SIGNAL);
        }
        installed = true;
    }

    /**
     * Blocks the kick signal and SIGBUS in the calling thread and returns the mask KVM_RUN should run
     * with: the thread's previous 64-bit kernel mask without either.
     */
    public static long blockInCallingThread() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment set = a.allocate(Libc.SIGSET_SIZE, 8);
            MemorySegment old = a.allocate(Libc.SIGSET_SIZE, 8);
            set.set(ValueLayout.JAVA_LONG, 0, MASK_BIT | SIGBUS_BIT);
            int err = Libc.pthreadSigmask(Libc.SIG_BLOCK, set, old);
            if (err != 0) throw new ErrnoException("pthread_sigmask(SIG_BLOCK)", err, "signals " + SIGNAL + " and " + SIGBUS);
            return old.get(ValueLayout.JAVA_LONG, 0) & ~(MASK_BIT | SIGBUS_BIT);
        }
    }

    /** tgkill of the kick signal to thread {@code tid}; ESRCH (thread gone) is ignored. */
    public static void send(MemorySegment capture, int pid, int tid) {
        if (Libc.tgkill(capture, pid, tid, SIGNAL) == -1) {
            int errno = Libc.errno(capture);
            if (errno != Errno.ESRCH) throw new ErrnoException("tgkill", errno, "thread " + tid + ", signal " + SIGNAL);
        }
    }

    /** Per-thread buffers for {@link #drain} and {@link #takeHardwareError}, made once. */
    public static final class Drainer {
        private final MemorySegment set, busSet, info, zeroTimeout;
        private final MemorySegment capture;

        public Drainer(MemorySegment capture) {
            Arena arena = Arena.ofAuto();
            this.capture = capture;
            set = arena.allocate(Libc.SIGSET_SIZE, 8);
            set.set(ValueLayout.JAVA_LONG, 0, MASK_BIT);
            busSet = arena.allocate(Libc.SIGSET_SIZE, 8);
            busSet.set(ValueLayout.JAVA_LONG, 0, SIGBUS_BIT);
            info = arena.allocate(128, 8);
            zeroTimeout = arena.allocate(16, 8);
        }

        /** Consumes every pending instance of the kick signal in the calling thread (real-time signals queue); returns how many. */
        public int drain() {
            int n = 0;
            while (Libc.sigtimedwait(capture, set, info, zeroTimeout) == SIGNAL) n++;
            return n;
        }

        /**
         * Takes a pending SIGBUS of the calling thread: the host address of the poisoned page it
         * names (BUS_MCEERR_AR/AO, siginfo's si_addr at offset 16), or -1 when none is pending or it
         * names no poisoned page.
         */
        public long takeHardwareError() {
            if (Libc.sigtimedwait(capture, busSet, info, zeroTimeout) != SIGBUS) return -1;
            int code = info.get(ValueLayout.JAVA_INT, 8);
            return code == BUS_MCEERR_AR || code == BUS_MCEERR_AO ? info.get(ValueLayout.JAVA_LONG, 16) : -1;
        }
    }
}
