package dev.faultline.transport;

import dev.faultline.vmm.ThreadPriority;
import java.nio.ByteBuffer;
import javax.net.ssl.SSLException;

/**
 * Runs the JDK's TLS code once per process, in memory, until the JIT has compiled it: a handshake,
 * then {@link #RECORDS} records encrypted and decrypted. Cold, AES-GCM runs interpreted at a few MB/s
 * and is compiled with its CPU intrinsic only after some 10,000 records (measured here: 2 MB/s at the
 * start, 180-300 MB/s on a loaded host after 20,000 records of 2 KiB); a migration that met it cold
 * would push its first megabytes at that speed. Started when the first TLS transport is made, on a
 * daemon thread at SCHED_IDLE, and not waited for: a listener warms up while it waits for its first
 * source, a source while it builds its machine, connects and waits for the destination's READY, each
 * on CPU time nothing else wants. On a loaded host it may not get far before the migration starts,
 * which then runs slower (never wrong); the destination's own warm-up requests still run the record
 * path a few thousand times.
 */
final class TlsWarmUp {
    private TlsWarmUp() {}

    /** Records encrypted and decrypted: enough for C2 to compile the record path with the AES-GCM intrinsic. */
    static final int RECORDS = 20_000;
    /** Their size: past the 512 bytes from which the JDK's GCM takes its bulk (intrinsic) path. */
    static final int RECORD_BYTES = 2048;
    /** Longest the warm-up runs (a heavily loaded host); the TLS code works cold too, only slowly. */
    static final long MAX_NANOS = 30_000_000_000L;

    private static boolean started;

    /** Starts the warm-up with engines of {@code t} unless one ran or runs in this process. */
    static synchronized void startOnce(TlsTransport t) {
        if (started) return;
        started = true;
        Thread.ofPlatform().daemon().name("tls-warm-up").start(() -> {
            // only CPU time nobody else wants: never in the way of a start-up, a handshake or a migration
            ThreadPriority.IDLE.applyToCurrentThread();
            try {
                run(t.warmUpPair());
            } catch (SSLException | RuntimeException e) {
                // the TLS code stays cold: slower, not wrong
            }
        });
    }

    private static void run(EnginePair pair) throws SSLException {
        ByteBuffer src = ByteBuffer.allocateDirect(RECORD_BYTES), dst = ByteBuffer.allocateDirect(RECORD_BYTES + 1024);
        long end = System.nanoTime() + MAX_NANOS;
        for (int i = 0; i < RECORDS && System.nanoTime() < end; i++) {
            src.clear();
            pair.wrap(src);
            dst.clear();
            pair.unwrap(dst);
        }
    }
}
