package dev.faultline.transport;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLEngineResult.Status;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;

/**
 * A TLS stream over a non-blocking socket, through the JDK's {@link SSLEngine}. Made by
 * {@link TlsTransport} only once {@link #handshake} has completed and the peer passed {@link PeerCheck}.
 *
 * <p>Buffers, made once: {@code netIn} (ciphertext read from the socket), {@code appIn} (plaintext of
 * a record beyond what a read asked for) and {@code netOut} (records not yet taken by the socket). The
 * engine decrypts a record in place in {@code netIn} and copies it straight into the caller's buffer,
 * spilling only the rest of the record into {@code appIn}; a write encrypts as many records as the
 * caller's bytes make (a 256 KiB message: 17 records) and hands them to the socket in one call.
 * Nothing is allocated here per call; the engine itself makes objects per record (its result, and a
 * fresh AES-GCM state for each record's nonce: about 2 KiB; docs/migration.md "Security").
 */
final class TlsLink extends ChannelLink {
    /** Records {@code netIn} and {@code netOut} hold once the peer is authenticated: a 64-page PAGES message (256 KiB and its header) goes out in one write. */
    private static final int RECORDS_BUFFERED = 18;
    /** Records they hold during the handshake: a peer not yet authenticated gets no more than that (about 70 KiB in all). */
    private static final int RECORDS_HANDSHAKE = 2;
    private static final ByteBuffer[] NOTHING = {ByteBuffer.allocate(0)};

    private final SSLEngine engine;
    private final int packetSize;
    /** Ciphertext read, not yet decrypted: [position, limit). */
    private ByteBuffer netIn;
    /** Plaintext decrypted, not yet read: [position, limit). */
    private final ByteBuffer appIn;
    /** Guards {@code netOut}, {@code netOutView} and {@code flushed}: written by the writer, and by a reader answering a key update. */
    private final Object writeLock = new Object();
    /** Records made: [0, position); of those [0, flushed) are on the socket already. */
    private ByteBuffer netOut;
    private ByteBuffer netOutView;
    private int flushed;
    private final ByteBuffer[] srcs = new ByteBuffer[1];
    private final ByteBuffer[] dsts = new ByteBuffer[2];
    private String identity = "none (handshake not done)";

    TlsLink(SocketChannel channel, SSLEngine engine) throws IOException {
        super(channel);
        this.engine = engine;
        this.packetSize = engine.getSession().getPacketBufferSize();
        // ciphertext on the heap: the JDK's AES-GCM runs its intrinsic over an array in one call, where over a
        // direct buffer it copies through two new 512-byte arrays per 512 bytes (GaloisCounterMode.implGCMCrypt)
        this.netIn = ByteBuffer.allocate(RECORDS_HANDSHAKE * packetSize).flip();
        this.appIn = ByteBuffer.allocateDirect(engine.getSession().getApplicationBufferSize()).flip();
        this.netOut = ByteBuffer.allocate(RECORDS_HANDSHAKE * packetSize);
        this.netOutView = netOut.duplicate();
    }

    /** Once the peer is authenticated: buffers for whole messages (what the handshake left in {@code netIn} kept). */
    private void growBuffers() {
        ByteBuffer in = ByteBuffer.allocate(RECORDS_BUFFERED * packetSize);
        in.put(netIn).flip();
        netIn = in;
        synchronized (writeLock) {
            ByteBuffer out = ByteBuffer.allocate(RECORDS_BUFFERED * packetSize);
            out.put(netOut.flip().position(flushed));
            netOut = out;
            netOutView = out.duplicate();
            flushed = 0;
        }
    }

    // ------------------------------------------------------------------ handshake

    /**
     * Runs the handshake to completion within {@code timeoutMillis}, then takes the peer's identity
     * (checked by {@code check} inside the handshake, and again here). Nothing the peer sends after
     * the handshake is decrypted before this returns.
     * @throws PeerRefusedException the peer failed a check, did not speak TLS, stalled or went away;
     *     the link is closed then
     */
    void handshake(int timeoutMillis, PeerCheck check) throws PeerRefusedException {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
        try {
            engine.beginHandshake();
            appIn.clear();
            boolean heardFromPeer = false;
            while (true) {
                HandshakeStatus hs = engine.getHandshakeStatus();
                switch (hs) {
                    case NOT_HANDSHAKING, FINISHED -> {
                        flushAll(deadline, timeoutMillis);
                        appIn.flip();
                        identity = verifiedIdentity(check);
                        growBuffers();
                        return;
                    }
                    case NEED_TASK -> runTasks();
                    case NEED_WRAP -> {
                        flushAll(deadline, timeoutMillis); // room for the record (handshake records are small)
                        synchronized (writeLock) {
                            if (engine.wrap(NOTHING, netOut).getStatus() == Status.CLOSED) {
                                throw new SSLException("the TLS engine closed during the handshake");
                            }
                        }
                        flushAll(deadline, timeoutMillis);
                    }
                    case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                        if (netIn.hasRemaining() && !heardFromPeer) {
                            notTls(netIn);
                            heardFromPeer = true;
                        }
                        Status s = netIn.hasRemaining() || hs == HandshakeStatus.NEED_UNWRAP_AGAIN ? engine.unwrap(netIn, appIn).getStatus() : Status.BUFFER_UNDERFLOW;
                        if (s == Status.CLOSED) throw new EOFException("the peer closed the connection during the TLS handshake");
                        if (s == Status.BUFFER_UNDERFLOW) awaitCiphertext(deadline, timeoutMillis);
                    }
                }
            }
        } catch (Refusal r) {
            sendAlertQuietly();
            close();
            throw new PeerRefusedException(peerAddress(), r.getMessage(), r.getCause());
        } catch (IOException | RuntimeException e) {
            sendAlertQuietly();
            close();
            throw new PeerRefusedException(peerAddress(), reason(e), e);
        }
    }

    /** A refusal of ours during the handshake, its message the reason. */
    private static final class Refusal extends IOException {
        private static final long serialVersionUID = 1L;

        Refusal(String reason, Throwable cause) {
            super(reason, cause);
        }
    }

    /** Refuses a peer whose first bytes are not a TLS record (a handshake record, or an alert). */
    private static void notTls(ByteBuffer in) throws Refusal {
        int p = in.position();
        int first = in.get(p) & 0xff;
        if (first == 0x16 || first == 0x15) return;
        if (in.remaining() >= 4 && in.getInt(p) == 0x464C4D47) { // "FLMG": a faultline migration frame in the clear
            throw new Refusal("not TLS: it speaks plain faultline migration (it runs with --insecure; this side needs TLS)", null);
        }
        throw new Refusal(String.format("not TLS (its first byte is 0x%02x, a TLS handshake starts with 0x16)", first), null);
    }

    /** Reads more ciphertext, waiting for it until {@code deadline}. */
    private void awaitCiphertext(long deadline, int timeoutMillis) throws IOException {
        while (true) {
            int n = fill();
            if (n < 0) throw new EOFException("the peer closed the connection during the TLS handshake");
            if (n > 0) return;
            long left = (deadline - System.nanoTime()) / 1_000_000;
            if (left <= 0) throw new Refusal("handshake timed out after " + timeoutMillis + " ms", null);
            awaitReadable(left);
        }
    }

    /** Writes every record made so far, waiting for the socket until {@code deadline}. */
    private void flushAll(long deadline, int timeoutMillis) throws IOException {
        while (flush() > 0) {
            long left = (deadline - System.nanoTime()) / 1_000_000;
            if (left <= 0) throw new Refusal("handshake timed out after " + timeoutMillis + " ms (the peer took nothing)", null);
            awaitWritable(left);
        }
    }

    private void runTasks() {
        for (Runnable t; (t = engine.getDelegatedTask()) != null; ) t.run();
    }

    /** The peer's name the allow-list accepted, checked again on the finished session. */
    private String verifiedIdentity(PeerCheck check) throws IOException {
        Certificate[] chain;
        try {
            chain = engine.getSession().getPeerCertificates();
        } catch (SSLPeerUnverifiedException e) {
            throw new Refusal("no certificate", e);
        }
        X509Certificate[] x = new X509Certificate[chain.length];
        for (int i = 0; i < chain.length; i++) {
            if (!(chain[i] instanceof X509Certificate c)) throw new Refusal("a certificate that is not X.509", null);
            x[i] = c;
        }
        try {
            return check.identity(x, () -> { }); // the PKIX part ran inside the handshake
        } catch (CertificateRefused e) {
            throw new Refusal(e.getMessage(), e);
        }
    }

    /**
     * One line for a failed handshake: the reason {@link PeerCheck} gave, "no certificate", the
     * peer's alert, or the engine's message.
     */
    static String reason(Throwable e) {
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (c instanceof CertificateRefused r) return r.getMessage();
        }
        String m = String.valueOf(e.getMessage());
        if (m.contains("Empty client certificate chain") || m.contains("Empty server certificate chain")) return "no certificate";
        String alert = "Received fatal alert: ";
        int at = m.indexOf(alert);
        if (at >= 0) {
            String name = m.substring(at + alert.length()).trim();
            return name.startsWith("certificate") || name.equals("bad_certificate") || name.equals("unknown_ca") || name.equals("access_denied")
                    ? "it refused this side's certificate (TLS alert " + name + "): its CA or its --tls-allow does not accept this side"
                    : "it ended the TLS handshake (TLS alert " + name + ")";
        }
        if (e instanceof EOFException || e instanceof ClosedChannelException) return m.equals("null") ? "the connection ended during the TLS handshake" : m;
        if (e instanceof SSLException) return "TLS handshake failed: " + m;
        return "the connection ended during the TLS handshake (" + m + ")";
    }

    /** After a failed handshake: the alert the engine made, if any, goes out now (without waiting). */
    private void sendAlertQuietly() {
        try {
            synchronized (writeLock) {
                if (roomForRecord()) engine.wrap(NOTHING, netOut);
                flush();
            }
        } catch (IOException | RuntimeException ignored) {
            // the connection is going anyway
        }
    }

    // ------------------------------------------------------------------ reading

    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (appIn.hasRemaining()) return drain(dst);
        while (true) {
            if (wholeRecordIn()) {
                int before = dst.position();
                SSLEngineResult r = unwrapInto(dst);
                if (r.getStatus() == Status.CLOSED) return -1;
                afterPostHandshakeMessage(r.getHandshakeStatus());
                int n = dst.position() - before;
                if (n > 0) return n;
                if (r.getStatus() == Status.BUFFER_OVERFLOW) {
                    throw new SSLException("TLS: a record larger than the " + appIn.capacity() + " bytes a record may hold");
                }
                if (r.getStatus() == Status.OK && r.bytesConsumed() > 0) continue; // a record with nothing for the reader (a session ticket, a key update)
            }
            int n = fill();
            if (n <= 0) return n;
        }
    }

    /**
     * Whether {@code netIn} holds a whole record (a 5-byte header: type, version, length; then length
     * bytes), so that a poll for data that is not all there yet does not call the engine (which makes
     * a result object per call).
     */
    private boolean wholeRecordIn() {
        int n = netIn.remaining();
        return n >= 5 && n >= 5 + (netIn.getShort(netIn.position() + 3) & 0xffff);
    }

    /** Decrypts the next record into {@code dst}, the part that does not fit into {@code appIn} (which is empty). */
    private SSLEngineResult unwrapInto(ByteBuffer dst) throws SSLException {
        appIn.clear();
        dsts[0] = dst;
        dsts[1] = appIn;
        try {
            return engine.unwrap(netIn, dsts, 0, 2);
        } catch (SSLException e) {
            // an alert after the handshake: in TLS 1.3 how a server refuses a client's certificate arrives here
            String m = String.valueOf(e.getMessage());
            throw new SSLException("TLS: " + (m.contains("Received fatal alert: ") ? reason(e) : m), e);
        } finally {
            dsts[0] = null;
            appIn.flip();
        }
    }

    private int drain(ByteBuffer dst) {
        int n = Math.min(dst.remaining(), appIn.remaining());
        int limit = appIn.limit();
        dst.put(appIn.limit(appIn.position() + n));
        appIn.limit(limit);
        return n;
    }

    /** A message after the handshake (TLS 1.3 key update) may ask for a task or an answer. */
    private void afterPostHandshakeMessage(HandshakeStatus hs) throws IOException {
        if (hs == HandshakeStatus.NEED_TASK) runTasks();
        if (engine.getHandshakeStatus() == HandshakeStatus.NEED_WRAP) {
            synchronized (writeLock) {
                if (roomForRecord()) engine.wrap(NOTHING, netOut);
                flush();
            }
        }
    }

    /** Reads what the socket has into {@code netIn} (compacting it when the room left is less than a record). */
    private int fill() throws IOException {
        int start = netIn.position(), end = netIn.limit();
        if (start == end) {
            start = end = 0;
        } else if (netIn.capacity() - end < packetSize) {
            netIn.compact();
            start = 0;
            end = netIn.position();
        }
        netIn.limit(netIn.capacity()).position(end);
        try {
            return channel.read(netIn);
        } finally {
            netIn.limit(netIn.position()).position(start);
        }
    }

    // ------------------------------------------------------------------ writing

    @Override
    public int write(ByteBuffer src) throws IOException {
        synchronized (writeLock) {
            int taken = 0;
            while (src.hasRemaining() && roomForRecord()) {
                srcs[0] = src;
                SSLEngineResult r;
                try {
                    r = engine.wrap(srcs, 0, 1, netOut);
                } catch (SSLException e) {
                    throw new SSLException("TLS: " + e.getMessage(), e);
                } finally {
                    srcs[0] = null;
                }
                if (r.getStatus() == Status.CLOSED) throw new ClosedChannelException();
                if (r.getHandshakeStatus() == HandshakeStatus.NEED_TASK) runTasks();
                taken += r.bytesConsumed();
            }
            flush();
            return taken;
        }
    }

    @Override
    public int flush() throws IOException {
        synchronized (writeLock) {
            int end = netOut.position();
            if (flushed < end) {
                netOutView.limit(end).position(flushed);
                channel.write(netOutView);
                flushed = netOutView.position();
            }
            if (flushed < end) return end - flushed;
            netOut.clear();
            flushed = 0;
            return 0;
        }
    }

    /** Whether {@code netOut} has room for one more record, after writing out and compacting what it can. */
    private boolean roomForRecord() throws IOException {
        if (netOut.capacity() - netOut.position() >= packetSize) return true;
        flush();
        if (flushed > 0) {
            netOut.limit(netOut.position()).position(flushed);
            netOut.compact();
            flushed = 0;
        }
        return netOut.capacity() - netOut.position() >= packetSize;
    }

    // ------------------------------------------------------------------ the rest

    @Override
    public String peerIdentity() { return identity; }

    @Override
    public boolean secure() { return true; }

    @Override
    public String protocol() {
        return engine.getSession().getProtocol() + " " + engine.getSession().getCipherSuite();
    }

    /** Sends close_notify if the socket takes it now, then closes. */
    @Override
    public void close() {
        try {
            synchronized (writeLock) {
                engine.closeOutbound();
                if (roomForRecord()) engine.wrap(NOTHING, netOut);
                flush();
            }
        } catch (IOException | RuntimeException ignored) {
            // closing a link that failed: the socket goes anyway
        }
        closeChannel();
    }
}
