package dev.faultline.transport;

import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
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
        SSLEngine c = ((TlsTransport) client).engine(true), s = ((TlsTransport) server).engine(false);
        int packet = c.getSession().getPacketBufferSize();
        ByteBuffer c2s = ByteBuffer.allocate(packet * 4), s2c = ByteBuffer.allocate(packet * 4);
        ByteBuffer app = ByteBuffer.allocate(c.getSession().getApplicationBufferSize() * 2);
        handshake(c, s, c2s, s2c, app);
        ByteBuffer src = ByteBuffer.allocateDirect(plaintextBytes);
        ByteBuffer dst = ByteBuffer.allocateDirect(plaintextBytes + 1024);
        ByteBuffer[] srcs = {src};
        ByteBuffer[] dsts = {dst};
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long wrapBytes = 0, unwrapBytes = 0;
        for (int pass = 0; pass < 2; pass++) {
            wrapBytes = unwrapBytes = 0;
            for (int i = 0; i < rounds; i++) {
                src.clear();
                c2s.clear();
                long t0 = mx.getCurrentThreadAllocatedBytes();
                c.wrap(srcs, 0, 1, c2s);
                long t1 = mx.getCurrentThreadAllocatedBytes();
                c2s.flip();
                dst.clear();
                s.unwrap(c2s, dsts, 0, 1);
                long t2 = mx.getCurrentThreadAllocatedBytes();
                wrapBytes += t1 - t0;
                unwrapBytes += t2 - t1;
                if (dst.position() != plaintextBytes) throw new IllegalStateException("unwrapped " + dst.position() + " of " + plaintextBytes + " bytes");
            }
        }
        return new PerRecord(wrapBytes / (double) rounds, unwrapBytes / (double) rounds);
    }

    private static void handshake(SSLEngine c, SSLEngine s, ByteBuffer c2s, ByteBuffer s2c, ByteBuffer app) throws SSLException {
        ByteBuffer empty = ByteBuffer.allocate(0);
        c.beginHandshake();
        s.beginHandshake();
        for (int step = 0; step < 1000; step++) {
            boolean cDone = done(c), sDone = done(s);
            if (cDone && sDone && c2s.position() == 0 && s2c.position() == 0) return;
            step(c, empty, c2s, s2c, app);
            step(s, empty, s2c, c2s, app);
        }
        throw new IllegalStateException("the in-memory handshake did not finish");
    }

    private static boolean done(SSLEngine e) {
        HandshakeStatus h = e.getHandshakeStatus();
        return h == HandshakeStatus.NOT_HANDSHAKING || h == HandshakeStatus.FINISHED;
    }

    /** One move of {@code e}: run its tasks, wrap into {@code out}, unwrap what waits in {@code in}. */
    private static void step(SSLEngine e, ByteBuffer empty, ByteBuffer out, ByteBuffer in, ByteBuffer app) throws SSLException {
        for (Runnable t; (t = e.getDelegatedTask()) != null; ) t.run();
        if (e.getHandshakeStatus() == HandshakeStatus.NEED_WRAP) e.wrap(empty, out);
        in.flip();
        while (in.hasRemaining()) {
            app.clear();
            SSLEngineResult r = e.unwrap(in, app);
            for (Runnable t; (t = e.getDelegatedTask()) != null; ) t.run();
            if (r.getStatus() != SSLEngineResult.Status.OK || r.bytesConsumed() == 0) break;
        }
        in.compact();
    }
}
