package dev.faultline.transport;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import javax.net.ssl.SSLException;

/**
 * Runs the JDK's TLS code once per process, in memory, until the JIT has compiled it: a handshake,
 * then at least {@link #RECORDS} records encrypted and decrypted, both ways, every {@link #LARGE_EVERY}th
 * one full and the others small, and on until the full ones run at compiled speed (the JIT compiles in
 * the background: the loop's end is not the compiles' end). Cold, AES-GCM runs interpreted at a few MB/s, and it gets its CPU intrinsics (AES-CTR,
 * GHASH) only once C2 has compiled their callers, after some 10,000 records. Measured here: a demo
 * migration that met it cold spent 1.3 CPU-seconds pushing its 133 MiB (0.22 over plain TCP); warm, the
 * engine encrypts and decrypts about 1,400 MB per CPU-second each way.
 * Small records raise the JIT's invocation counts at little cost (528 bytes: just past the 512 from
 * which the JDK's GCM takes its bulk path); the full ones, mixed in from the start and sent both
 * ways, give the compiled code the branch profile of real traffic (with all the small ones first and
 * one way only, the first real connection deoptimized the compiled read path).
 *
 * <p>Run when the first TLS transport of a process is made, on the thread that makes it, before the
 * process listens or connects: a migration must not meet this code cold, least of all in its
 * downtime, when the low memory and the vCPU state travel encrypted (with cold code on both sides a
 * switch-over took 721 ms here instead of about 40). It costs that start-up about a second on a quiet
 * host, more on a loaded one (18 s at a load of 20 on 2 CPUs), at most {@link #MAX_NANOS}; {@link #state}
 * says what it took.
 */
final class TlsWarmUp {
    private TlsWarmUp() {}

    static final int RECORDS = 20_000, SMALL_BYTES = 528, LARGE_BYTES = 16_384, LARGE_EVERY = 8;
    /**
     * CPU time under which a full record's round (encrypted, then decrypted) counts as compiled: 55 µs,
     * 600 MB per CPU-second each way. Compiled here: 1,200-1,500; interpreted or C1: 2-200.
     */
    static final long COMPILED_NANOS_PER_LARGE = 55_000;
    /** Full records measured together for that. */
    static final int WINDOW = 64;
    /** Longest the warm-up runs; the TLS code works cold too, only slowly. */
    static final long MAX_NANOS = 30_000_000_000L;

    private static boolean done;
    private static volatile int records;
    private static volatile long tookNanos;
    private static volatile String failure;
    private static volatile boolean compiled;

    /** Runs the warm-up with engines of {@code t} on this thread, unless it ran in this process already. */
    static synchronized void once(TlsTransport t) {
        if (done) return;
        done = true;
        long t0 = System.nanoTime();
        try {
            run(t.warmUpPair());
        } catch (SSLException | RuntimeException e) {
            failure = String.valueOf(e.getMessage()); // the TLS code stays cold: slower, not wrong
        }
        tookNanos = System.nanoTime() - t0;
    }

    private static void run(EnginePair pair) throws SSLException {
        ByteBuffer src = ByteBuffer.allocateDirect(LARGE_BYTES), dst = ByteBuffer.allocateDirect(LARGE_BYTES + 1024);
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long end = System.nanoTime() + MAX_NANOS;
        long windowNanos = 0;
        int inWindow = 0;
        boolean compiled = false;
        for (int i = 0; (i < RECORDS || !compiled) && System.nanoTime() < end; i++) {
            boolean large = i % LARGE_EVERY == 0;
            src.clear().limit(large ? LARGE_BYTES : SMALL_BYTES);
            dst.clear();
            long cpu0 = large ? mx.getCurrentThreadCpuTime() : 0;
            if ((i & 1) == 0) {
                pair.wrap(src);
                pair.unwrap(dst);
            } else {
                pair.back(src, dst);
            }
            if (large) {
                windowNanos += mx.getCurrentThreadCpuTime() - cpu0;
                if (++inWindow == WINDOW) {
                    compiled = windowNanos < WINDOW * COMPILED_NANOS_PER_LARGE;
                    windowNanos = 0;
                    inWindow = 0;
                }
            }
            records = i + 1;
        }
        TlsWarmUp.compiled = compiled;
    }

    /** What this process's warm-up did: "23104 records in 1840 ms, compiled" ("..., not compiled yet" when it ran out of time). */
    static String state() {
        String what = records + " records in " + tookNanos / 1_000_000 + " ms";
        return failure != null ? "failed after " + what + ": " + failure : what + (compiled ? ", compiled" : ", not compiled yet");
    }
}
