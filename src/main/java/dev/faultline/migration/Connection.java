package dev.faultline.migration;

import dev.faultline.transport.Link;
import dev.faultline.transport.PlainLink;
import dev.faultline.transport.Transport;
import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.zip.CRC32C;

/**
 * One connection of a migration, framed as {@link Protocol} says: sequence numbers per direction,
 * a CRC32C on every frame, a timeout on silence. Sending is thread-safe (one frame at a time); receiving is
 * done by one thread. Every error names the peer and the frame.
 *
 * <p>It sits on a {@link Link} (made by a {@link Transport}): mutual TLS 1.3, or plain TCP on loopback.
 * Whoever made the link has authenticated the peer already; this class only frames.
 *
 * <p>Frames go through native (direct) buffers on a non-blocking link: on plain TCP a page is copied
 * once by the kernel into the receive buffer and once out of it (UFFDIO_COPY reads it from there),
 * where a socket stream would stage it through a temporary native buffer and a heap array first; over
 * TLS the engine decrypts it into the receive buffer. Waits use the link's selector per direction, so
 * a timeout still means "nothing moved for that long".
 */
public final class Connection implements AutoCloseable {
    private final Link link;
    private final String peer;
    private final Object sendLock = new Object();
    private final ByteBuffer sendBuf;
    private final ByteBuffer sendView;
    private final MemorySegment sendSegment;
    private final CRC32C sendCrc = new CRC32C();
    private long sendSeq;
    private ByteBuffer recvBuf;
    private final CRC32C recvCrc = new CRC32C();
    private long recvSeq;
    private int lastType, lastLength;
    private MemorySegment recvSegment;
    private ByteBuffer recvView, recvViewOf;
    private volatile int timeoutMillis;
    private final AtomicLong bytesSent = new AtomicLong(), bytesReceived = new AtomicLong();

    /**
     * Plain TCP, unauthenticated (for loopback tests): wraps a connected socket that has a channel (an
     * accept on a server socket from {@link MigrationDestination#listen}, or {@code SocketChannel.open});
     * the channel is switched to non-blocking mode.
     */
    public Connection(Socket socket, int timeoutMillis) throws IOException {
        this(new PlainLink(channelOf(socket)), timeoutMillis);
    }

    private static java.nio.channels.SocketChannel channelOf(Socket socket) {
        if (socket.getChannel() == null) {
            throw new IllegalArgumentException("a migration connection needs a socket with a channel (Connection.connect, or MigrationDestination.listen)");
        }
        return socket.getChannel();
    }

    /** Frames over {@code link} (its peer authenticated by the transport that made it), which it owns from now on. */
    public Connection(Link link, int timeoutMillis) {
        this.link = link;
        this.timeoutMillis = timeoutMillis;
        this.peer = link.peerAddress();
        int frameBytes = Protocol.HEADER_BYTES + Protocol.MAX_PAGES_PER_MESSAGE * Protocol.PAGE + 4096;
        this.sendBuf = ByteBuffer.allocateDirect(frameBytes);
        this.sendView = sendBuf.duplicate();
        this.sendSegment = MemorySegment.ofBuffer(sendBuf).asSlice(Protocol.HEADER_BYTES);
        this.recvBuf = ByteBuffer.allocateDirect(frameBytes);
    }

    /** Opens a plain TCP connection to {@code host:port} (loopback tests), giving up after {@code timeoutMillis}. */
    public static Connection connect(String host, int port, int timeoutMillis) throws IOException {
        return connect(Transport.insecure(), host, port, timeoutMillis);
    }

    /**
     * Opens a connection to {@code host:port} through {@code transport}: for TLS, the handshake and
     * the check of the peer's certificate are done when this returns. Gives up after {@code timeoutMillis}.
     * @throws dev.faultline.transport.PeerRefusedException the peer failed the transport's checks
     */
    public static Connection connect(Transport transport, String host, int port, int timeoutMillis) throws IOException {
        return new Connection(transport.connect(host, port, timeoutMillis), timeoutMillis);
    }

    /** "peer 127.0.0.1:7000": how errors name the other side. */
    public String peer() { return "peer " + peer; }

    /** The link under the frames: the peer's authenticated identity ({@link Link#peerIdentity}) and the protocol. */
    public Link link() { return link; }

    public long bytesSent() { return bytesSent.get(); }
    public long bytesReceived() { return bytesReceived.get(); }

    /** How long this side waits for the peer to send or take anything (0: for ever). */
    public void setTimeout(int millis) throws IOException {
        if (millis < 0) throw new IllegalArgumentException("timeout must not be negative, got " + millis);
        timeoutMillis = millis;
    }

    /**
     * The send buffer from the payload's start (where {@link #send(int, Consumer)} positions the
     * buffer it gives a body) as a segment: a body may write through it instead of the buffer.
     */
    public MemorySegment sendSegment() { return sendSegment; }

    /**
     * Sends one frame of {@code type} whose payload {@code body} writes into the buffer it is given
     * (positioned after the header; at most the page-message size, larger payloads use {@link #send(int, byte[])}).
     */
    public void send(int type, Consumer<ByteBuffer> body) {
        synchronized (sendLock) {
            sendView.clear().position(Protocol.HEADER_BYTES);
            body.accept(sendView);
            int len = sendView.position() - Protocol.HEADER_BYTES;
            sendFrame(type, sendBuf, len);
        }
    }

    /** Sends one frame whose payload is {@code payload} (any size up to {@link Protocol#MAX_PAYLOAD}). */
    public void send(int type, byte[] payload) {
        synchronized (sendLock) {
            ByteBuffer frame = Protocol.HEADER_BYTES + payload.length <= sendBuf.capacity() ? sendBuf
                    : ByteBuffer.allocateDirect(Protocol.HEADER_BYTES + payload.length);
            frame.clear().position(Protocol.HEADER_BYTES);
            frame.put(payload);
            sendFrame(type, frame, payload.length);
        }
    }

    /** Fills in the header of the frame in {@code frame} (payload at HEADER_BYTES, {@code len} bytes) and writes it all. */
    private void sendFrame(int type, ByteBuffer frame, int len) {
        frame.putInt(Protocol.OFF_MAGIC, Protocol.MAGIC);
        frame.put(Protocol.OFF_VERSION, (byte) Protocol.VERSION);
        frame.put(Protocol.OFF_TYPE, (byte) type);
        frame.putShort(Protocol.OFF_RESERVED, (short) 0);
        frame.putLong(Protocol.OFF_SEQ, ++sendSeq);
        frame.putInt(Protocol.OFF_LENGTH, len);
        sendCrc.reset();
        sendCrc.update(frame.limit(Protocol.CRC_COVERED_HEADER).position(0));
        sendCrc.update(frame.limit(Protocol.HEADER_BYTES + len).position(Protocol.HEADER_BYTES));
        frame.putInt(Protocol.OFF_CRC, (int) sendCrc.getValue());
        frame.limit(Protocol.HEADER_BYTES + len).position(0);
        try {
            long deadline = 0;
            int buffered = Integer.MAX_VALUE; // bytes the link holds (TLS records) after the frame is all taken
            while (true) {
                boolean moved;
                if (frame.hasRemaining()) {
                    moved = link.write(frame) > 0;
                } else {
                    int left = link.flush();
                    if (left == 0) break;
                    moved = left < buffered;
                    buffered = left;
                }
                if (moved) {
                    deadline = 0;
                    continue;
                }
                deadline = await(false, deadline);
                if (deadline < 0) {
                    throw new ProtocolException(peer() + " went silent: it took nothing for " + timeoutMillis + " ms while this side sent "
                            + Protocol.typeName(type) + " #" + sendSeq + " (" + frame.position() + " of " + frame.limit() + " bytes sent"
                            + (frame.hasRemaining() ? "" : ", " + buffered + " bytes of TLS records still queued") + ")");
                }
            }
            bytesSent.addAndGet(Protocol.HEADER_BYTES + len);
        } catch (java.nio.channels.ClosedChannelException e) {
            throw new ProtocolException(peer() + ": the connection was closed on this side while it sent " + Protocol.typeName(type) + " #" + sendSeq, e);
        } catch (IOException e) {
            throw new ProtocolException(peer() + ": sending " + Protocol.typeName(type) + " #" + sendSeq + " failed: " + e.getMessage(), e);
        }
    }

    /**
     * Waits until the link is readable ({@code read}) or writable, or the timeout since the first wait
     * of this stall ({@code deadline} 0: none yet) runs out. Returns the deadline to pass next time, or
     * -1 when it has passed.
     */
    private long await(boolean read, long deadline) throws IOException {
        int timeout = timeoutMillis;
        long wait = 0;
        if (timeout != 0) {
            long now = System.nanoTime();
            if (deadline == 0) deadline = now + timeout * 1_000_000L;
            long left = deadline - now;
            if (left <= 0) return -1;
            wait = Math.max(1, left / 1_000_000);
        }
        if (read) link.awaitReadable(wait);
        else link.awaitWritable(wait);
        return deadline;
    }

    /**
     * Receives the next frame, checking magic, version, length, CRC32C and sequence number.
     * @param waitingFor what this side waits for, for the timeout message ("the reply to request 7");
     *     its {@code toString()} is called only to word an error
     * @throws ProtocolException naming the peer and the frame when anything is wrong or the peer is silent
     */
    public Frame receive(Object waitingFor) {
        return receive(waitingFor, 0);
    }

    /**
     * As {@link #receive(Object)}, but first polls the socket for up to {@code spinNanos} before
     * sleeping until data comes: for a reply due within microseconds, where being woken up would
     * cost more than the wait (a cross-CPU wake-up here is tens of microseconds).
     */
    public Frame receive(Object waitingFor, long spinNanos) {
        receiveInPlace(waitingFor, spinNanos);
        return lastFrame();
    }

    /**
     * As {@link #receive(Object, long)}, without making anything: returns the payload's length and
     * leaves the frame in the receive buffer, its type in {@link #lastType()}, its sequence number in
     * {@link #lastSeq()} and its payload at {@link Protocol#HEADER_BYTES} of {@link #receivedSegment()},
     * all valid until the next receive. For the fault path, which must not allocate per fault.
     */
    public int receiveInPlace(Object waitingFor, long spinNanos) {
        long seq = recvSeq + 1;
        ByteBuffer in = recvBuf;
        readFully(in.clear().limit(Protocol.HEADER_BYTES), waitingFor, spinNanos, seq, -1, 0);
        int magic = in.getInt(Protocol.OFF_MAGIC);
        if (magic != Protocol.MAGIC) {
            boolean tls = seq == 1 && (magic >>> 24) == 0x16 && ((magic >>> 16) & 0xff) == 0x03; // a TLS handshake record
            throw new ProtocolException(String.format("%s: message #%d does not start with the magic \"FLMG\" (found 0x%08x): %s",
                    peer(), seq, magic, tls ? "a TLS client, and this side runs without TLS (--insecure)" : "not a faultline migration peer"));
        }
        int version = in.get(Protocol.OFF_VERSION) & 0xff;
        int type = in.get(Protocol.OFF_TYPE) & 0xff;
        if (version != Protocol.VERSION) {
            throw new ProtocolException(peer() + ": message #" + seq + " (" + Protocol.typeName(type) + ") speaks protocol version " + version
                    + ", this side speaks version " + Protocol.VERSION);
        }
        long gotSeq = in.getLong(Protocol.OFF_SEQ);
        int len = in.getInt(Protocol.OFF_LENGTH);
        int want = in.getInt(Protocol.OFF_CRC);
        if (len < 0 || len > Protocol.MAX_PAYLOAD) {
            throw new ProtocolException(peer() + ": message " + what(type, gotSeq) + " announces a payload of " + Integer.toUnsignedString(len)
                    + " bytes, more than the " + Protocol.MAX_PAYLOAD + " allowed");
        }
        if (in.capacity() < Protocol.HEADER_BYTES + len) {
            ByteBuffer bigger = ByteBuffer.allocateDirect(Protocol.HEADER_BYTES + len);
            bigger.put(in.flip());
            recvBuf = in = bigger;
        }
        readFully(in.limit(Protocol.HEADER_BYTES + len).position(Protocol.HEADER_BYTES), waitingFor, spinNanos, gotSeq, type, len);
        recvCrc.reset();
        recvCrc.update(in.limit(Protocol.CRC_COVERED_HEADER).position(0));
        recvCrc.update(in.limit(Protocol.HEADER_BYTES + len).position(Protocol.HEADER_BYTES));
        if ((int) recvCrc.getValue() != want) {
            throw new ProtocolException(String.format("%s: message %s is corrupted: CRC32C 0x%08x, the header says 0x%08x; nothing of it was used",
                    peer(), what(type, gotSeq), (int) recvCrc.getValue(), want));
        }
        if (gotSeq != seq) {
            throw new ProtocolException(peer() + ": message " + what(type, gotSeq) + " arrived where #" + seq + " was due (a message was lost or repeated)");
        }
        recvSeq = seq;
        lastType = type;
        lastLength = len;
        bytesReceived.addAndGet(Protocol.HEADER_BYTES + len);
        return len;
    }

    /** The type of the frame {@link #receiveInPlace} received last. */
    public int lastType() { return lastType; }

    /** The sequence number of the frame received last. */
    public long lastSeq() { return recvSeq; }

    /** The receive buffer as a segment: the last frame's header at 0, its payload at {@link Protocol#HEADER_BYTES}. */
    public MemorySegment receivedSegment() {
        viewsOfReceiveBuffer();
        return recvSegment;
    }

    /** The receive buffer (a view of its whole capacity, for absolute reads), laid out as {@link #receivedSegment()}. */
    public ByteBuffer receivedBuffer() {
        viewsOfReceiveBuffer();
        return recvView;
    }

    /** The last frame received, made from the receive buffer (for what is not on a fault path). */
    public Frame lastFrame() {
        return new Frame(lastType, recvSeq, recvBuf.slice(Protocol.HEADER_BYTES, lastLength));
    }

    private void viewsOfReceiveBuffer() {
        if (recvViewOf != recvBuf) { // made again only when the buffer grew for a large message
            recvView = recvBuf.duplicate().clear();
            recvSegment = MemorySegment.ofBuffer(recvView);
            recvViewOf = recvBuf;
        }
    }

    private static String what(int type, long seq) {
        return Protocol.typeName(type) + " #" + seq;
    }

    /** "the header of message #7" ({@code type} < 0) or "the 4120-byte payload of PAGES #7". */
    private static String part(long seq, int type, int len) {
        return type < 0 ? "the header of message #" + seq : "the " + len + "-byte payload of " + what(type, seq);
    }

    /**
     * Reads until {@code buf} is full (position to limit), or fails naming what was being read
     * (the header of message {@code seq} when {@code type} < 0, else its payload); polls for up to
     * {@code spinNanos} before each sleep.
     */
    private void readFully(ByteBuffer buf, Object waitingFor, long spinNanos, long seq, int type, int len) {
        int start = buf.position();
        try {
            long deadline = 0, spinUntil = spinNanos > 0 ? System.nanoTime() + spinNanos : 0;
            while (buf.hasRemaining()) {
                int n = link.read(buf);
                if (n < 0) throw new EOFException();
                if (n > 0) {
                    deadline = 0;
                    continue;
                }
                if (spinUntil != 0 && System.nanoTime() < spinUntil) {
                    Thread.onSpinWait();
                    continue;
                }
                deadline = await(true, deadline);
                if (deadline < 0) {
                    throw new ProtocolException(peer() + " went silent: nothing for " + timeoutMillis + " ms while this side waited for "
                            + waitingFor + " (" + part(seq, type, len) + ", " + (buf.position() - start) + " of " + (buf.limit() - start) + " bytes read)");
                }
            }
        } catch (EOFException e) {
            int got = buf.position() - start;
            if (seq == 1 && type < 0 && got >= 2 && buf.get(start) == 0x15 && buf.get(start + 1) == 0x03) { // a TLS alert record
                throw new ProtocolException(peer() + " answered with a TLS alert and closed the connection: it runs TLS, and this side runs "
                        + "without TLS (--insecure)", e);
            }
            throw new ProtocolException(got == 0 && type < 0
                    ? peer() + " closed the connection while this side waited for " + waitingFor
                    : peer() + ": truncated message: the connection ended after " + got + " of " + (buf.limit() - start) + " bytes of " + part(seq, type, len)
                    + "; nothing of it was used", e);
        } catch (java.nio.channels.ClosedChannelException e) {
            throw new ProtocolException(peer() + ": the connection was closed on this side while it waited for " + waitingFor
                    + " (" + part(seq, type, len) + ")", e);
        } catch (IOException e) {
            throw new ProtocolException(peer() + ": reading " + part(seq, type, len) + " failed: " + e.getMessage(), e);
        }
    }

    /** Sends ERROR with {@code message} if the connection still works; never throws. */
    public void sendErrorQuietly(String message) {
        try {
            send(Protocol.ERROR, Messages.string(message));
        } catch (RuntimeException ignored) {
            // the peer is gone or the connection is what failed: the error is reported locally
        }
    }

    @Override
    public void close() {
        link.close();
    }
}
