package dev.faultline.transport;

import java.nio.ByteBuffer;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLException;

/**
 * A client and a server engine talking in memory, no sockets: for warming the JDK's TLS code up
 * ({@link TlsWarmUp}) and for measuring what the engine itself costs per record.
 */
public final class EnginePair {
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);

    private final SSLEngine client, server;
    private final ByteBuffer c2s, s2c, scratch;
    private final ByteBuffer[] one = new ByteBuffer[1], into = new ByteBuffer[1];

    /** Handshakes {@code client} (client mode) with {@code server} (server mode) in memory. */
    EnginePair(SSLEngine client, SSLEngine server) throws SSLException {
        this.client = client;
        this.server = server;
        int packet = client.getSession().getPacketBufferSize();
        this.c2s = ByteBuffer.allocate(packet * 4);
        this.s2c = ByteBuffer.allocate(packet * 4);
        this.scratch = ByteBuffer.allocate(client.getSession().getApplicationBufferSize() * 2);
        client.beginHandshake();
        server.beginHandshake();
        for (int step = 0; step < 1000; step++) {
            if (done(client) && done(server) && c2s.position() == 0 && s2c.position() == 0) return;
            step(client, c2s, s2c);
            step(server, s2c, c2s);
        }
        throw new SSLException("the in-memory handshake did not finish");
    }

    /** A pair of engines of two transports (the first connects, the second accepts), as over a socket. */
    public static EnginePair of(Transport client, Transport server) throws SSLException {
        return new EnginePair(((TlsTransport) client).engine(true), ((TlsTransport) server).engine(false));
    }

    private static boolean done(SSLEngine e) {
        HandshakeStatus h = e.getHandshakeStatus();
        return h == HandshakeStatus.NOT_HANDSHAKING || h == HandshakeStatus.FINISHED;
    }

    /** One move of {@code e}: its tasks, a wrap into {@code out}, the unwraps of what waits in {@code in}. */
    private void step(SSLEngine e, ByteBuffer out, ByteBuffer in) throws SSLException {
        for (Runnable t; (t = e.getDelegatedTask()) != null; ) t.run();
        if (e.getHandshakeStatus() == HandshakeStatus.NEED_WRAP) e.wrap(EMPTY, out);
        in.flip();
        while (in.hasRemaining()) {
            scratch.clear();
            SSLEngineResult r = e.unwrap(in, scratch);
            for (Runnable t; (t = e.getDelegatedTask()) != null; ) t.run();
            if (r.getStatus() != SSLEngineResult.Status.OK || r.bytesConsumed() == 0) break;
        }
        in.compact();
    }

    /** Encrypts {@code src} (all of it, at most one record's worth) on the client into one record. */
    public void wrap(ByteBuffer src) throws SSLException {
        wrap(client, c2s, src);
    }

    /** Decrypts the record {@link #wrap} made on the server into {@code dst}; returns the bytes it holds. */
    public int unwrap(ByteBuffer dst) throws SSLException {
        return unwrap(server, c2s, dst);
    }

    /** As {@link #wrap} and {@link #unwrap}, the other way: from the server to the client. */
    int back(ByteBuffer src, ByteBuffer dst) throws SSLException {
        wrap(server, s2c, src);
        return unwrap(client, s2c, dst);
    }

    private void wrap(SSLEngine e, ByteBuffer net, ByteBuffer src) throws SSLException {
        net.clear();
        one[0] = src;
        e.wrap(one, 0, 1, net);
        net.flip();
    }

    private int unwrap(SSLEngine e, ByteBuffer net, ByteBuffer dst) throws SSLException {
        into[0] = dst;
        int before = dst.position();
        e.unwrap(net, into, 0, 1);
        net.clear();
        return dst.position() - before;
    }
}
