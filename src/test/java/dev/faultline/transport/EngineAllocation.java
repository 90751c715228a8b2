package dev.faultline.transport;

import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import javax.net.ssl.SSLException;

/**
 * What the JDK's TLS engine itself allocates per record, measured on a pair of engines of two
 * {@link Transport#tls} transports talking in memory (no sockets, no links): the floor that a
 * connection over TLS cannot go below.
 */
public final class EngineAllocation {
    private EngineAllocation() {}

    /** Bytes the engine makes to wrap one record of a given size, and to unwrap it. */
    public record PerRecord(double wrap, double unwrap) {}

    /**
     * Handshakes a client engine of {@code client} with a server engine of {@code server} in memory,
     * then wraps and unwraps {@code rounds} records of {@code plaintextBytes} each way (after as
     * many for warm-up) and returns the bytes allocated per wrap and per unwrap.
     */
    public static PerRecord measure(Transport client, Transport server, int plaintextBytes, int rounds) throws SSLException {
        EnginePair pair = EnginePair.of(client, server);
        ByteBuffer src = ByteBuffer.allocateDirect(plaintextBytes);
        ByteBuffer dst = ByteBuffer.allocateDirect(plaintextBytes + 1024);
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long wrapBytes = 0, unwrapBytes = 0;
        for (int pass = 0; pass < 2; pass++) {
            wrapBytes = unwrapBytes = 0;
            for (int i = 0; i < rounds; i++) {
                src.clear();
                long t0 = mx.getCurrentThreadAllocatedBytes();
                pair.wrap(src);
                long t1 = mx.getCurrentThreadAllocatedBytes();
                dst.clear();
                int n = pair.unwrap(dst);
                long t2 = mx.getCurrentThreadAllocatedBytes();
                wrapBytes += t1 - t0;
                unwrapBytes += t2 - t1;
                if (n != plaintextBytes) throw new IllegalStateException("unwrapped " + n + " of " + plaintextBytes + " bytes");
            }
        }
        return new PerRecord(wrapBytes / (double) rounds, unwrapBytes / (double) rounds);
    }
}
