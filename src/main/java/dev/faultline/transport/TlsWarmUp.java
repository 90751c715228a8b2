package dev.faultline.transport;

import java.nio.ByteBuffer;
import javax.net.ssl.SSLException;

/**
 * Runs the JDK's TLS code once per process, in memory, until the JIT has compiled it: a handshake,
 * then {@link #SMALL_RECORDS} small records and {@link #LARGE_RECORDS} full ones, encrypted and
 * decrypted. Cold, AES-GCM runs interpreted at a few MB/s, and it gets its CPU intrinsics (AES-CTR,
 * GHASH) only once C2 has compiled their callers, after some 10,000 records. Measured here: a demo
 * migration that met it cold spent 1.3 CPU-seconds pushing its 133 MiB (0.22 over plain TCP); warm, the
 * engine encrypts and decrypts about 1,400 MB per CPU-second each way.
 * Small records raise the JIT's invocation counts at little cost (528 bytes: just past the 512 from
 * which the JDK's GCM takes its bulk path); the full ones compile the paths of a 16 KiB record.
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

    static final int SMALL_RECORDS = 20_000, SMALL_BYTES = 528;
    static final int LARGE_RECORDS = 500, LARGE_BYTES = 16_384;
    /** Longest the warm-up runs; the TLS code works cold too, only slowly. */
    static final long MAX_NANOS = 30_000_000_000L;

    private static boolean done;
    private static volatile int records;
    private static volatile long tookNanos;
    private static volatile String failure;

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
        long end = System.nanoTime() + MAX_NANOS;
        for (int i = 0; i < SMALL_RECORDS + LARGE_RECORDS && System.nanoTime() < end; i++) {
            src.clear().limit(i < SMALL_RECORDS ? SMALL_BYTES : LARGE_BYTES);
            pair.wrap(src);
            dst.clear();
            pair.unwrap(dst);
            records = i + 1;
        }
    }

    /** What this process's warm-up did: "20500 records in 1840 ms". */
    static String state() {
        String what = records + " of " + (SMALL_RECORDS + LARGE_RECORDS) + " records in " + tookNanos / 1_000_000 + " ms";
        return failure != null ? "failed after " + what + ": " + failure : what;
    }
}
