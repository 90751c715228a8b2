package dev.faultline.transport;

import dev.faultline.vmm.ThreadPriority;
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
 * <p>Started when the first TLS transport is made, on a daemon thread at SCHED_IDLE, and not waited
 * for: a listener warms up while it waits for its first source, a source while it builds its
 * machine, connects and waits for the destination's READY, each on CPU time nothing else wants. On a
 * loaded host it may not get far before the migration starts, which then runs slower (never wrong);
 * {@link #state} says how far it got.
 */
final class TlsWarmUp {
    private TlsWarmUp() {}

    static final int SMALL_RECORDS = 20_000, SMALL_BYTES = 528;
    static final int LARGE_RECORDS = 500, LARGE_BYTES = 16_384;
    /** Longest the warm-up runs; the TLS code works cold too, only slowly. */
    static final long MAX_NANOS = 60_000_000_000L;

    private static boolean started;
    private static volatile int records;
    private static volatile long startNanos, tookNanos;
    private static volatile String failure;

    /** Starts the warm-up with engines of {@code t} unless one ran or runs in this process. */
    static synchronized void startOnce(TlsTransport t) {
        if (started) return;
        started = true;
        startNanos = System.nanoTime();
        Thread.ofPlatform().daemon().name("tls-warm-up").start(() -> {
            // only CPU time nobody else wants: never in the way of a start-up, a handshake or a migration
            ThreadPriority.IDLE.applyToCurrentThread();
            try {
                run(t.warmUpPair());
                tookNanos = System.nanoTime() - startNanos;
            } catch (SSLException | RuntimeException e) {
                failure = String.valueOf(e.getMessage()); // the TLS code stays cold: slower, not wrong
            }
        });
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

    /** How far this process's warm-up got: "done (20500 records in 1840 ms)", "running (3100 of 20500 records)". */
    static String state() {
        int total = SMALL_RECORDS + LARGE_RECORDS;
        if (failure != null) return "failed after " + records + " records: " + failure;
        long took = tookNanos;
        if (took > 0) return "done (" + records + " records in " + took / 1_000_000 + " ms)";
        return started ? "running (" + records + " of " + total + " records)" : "not started";
    }
}
