package dev.faultline.migration;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.zip.CRC32C;

/**
 * One TCP connection of a migration, framed as {@link Protocol} says: sequence numbers per direction,
 * a CRC32C on every frame, a read timeout. Sending is thread-safe (one frame at a time); receiving is
 * done by one thread. Every error names the peer and the frame.
 */
public final class Connection implements AutoCloseable {
    private final Socket socket;
    private final String peer;
    private final InputStream in;
    private final OutputStream out;
    private final Object sendLock = new Object();
    private final byte[] sendBuf;
    private final ByteBuffer sendView;
    private final CRC32C sendCrc = new CRC32C();
    private long sendSeq;
    private byte[] recvBuf;
    private final CRC32C recvCrc = new CRC32C();
    private long recvSeq;
    private final AtomicLong bytesSent = new AtomicLong(), bytesReceived = new AtomicLong();

    public Connection(Socket socket, int timeoutMillis) throws IOException {
        this.socket = socket;
        socket.setTcpNoDelay(true);
        socket.setSoTimeout(timeoutMillis);
        this.peer = socket.getInetAddress().getHostAddress() + ":" + socket.getPort();
        this.in = socket.getInputStream();
        this.out = socket.getOutputStream();
        this.sendBuf = new byte[Protocol.HEADER_BYTES + Protocol.MAX_PAGES_PER_MESSAGE * Protocol.PAGE + 4096];
        this.sendView = ByteBuffer.wrap(sendBuf);
        this.recvBuf = new byte[Protocol.HEADER_BYTES + Protocol.MAX_PAGES_PER_MESSAGE * Protocol.PAGE + 4096];
    }

    /** "peer 127.0.0.1:7000": how errors name the other side. */
    public String peer() { return "peer " + peer; }

    public long bytesSent() { return bytesSent.get(); }
    public long bytesReceived() { return bytesReceived.get(); }

    public void setTimeout(int millis) throws IOException { socket.setSoTimeout(millis); }

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
        byte[] frame = new byte[Protocol.HEADER_BYTES + payload.length];
        System.arraycopy(payload, 0, frame, Protocol.HEADER_BYTES, payload.length);
        synchronized (sendLock) {
            sendFrame(type, frame, payload.length);
        }
    }

    private void sendFrame(int type, byte[] frame, int len) {
        ByteBuffer h = ByteBuffer.wrap(frame, 0, Protocol.HEADER_BYTES);
        h.putInt(Protocol.OFF_MAGIC, Protocol.MAGIC);
        h.put(Protocol.OFF_VERSION, (byte) Protocol.VERSION);
        h.put(Protocol.OFF_TYPE, (byte) type);
        h.putShort(Protocol.OFF_RESERVED, (short) 0);
        h.putLong(Protocol.OFF_SEQ, ++sendSeq);
        h.putInt(Protocol.OFF_LENGTH, len);
        sendCrc.reset();
        sendCrc.update(frame, 0, Protocol.CRC_COVERED_HEADER);
        sendCrc.update(frame, Protocol.HEADER_BYTES, len);
        h.putInt(Protocol.OFF_CRC, (int) sendCrc.getValue());
        try {
            out.write(frame, 0, Protocol.HEADER_BYTES + len);
            bytesSent.addAndGet(Protocol.HEADER_BYTES + len);
        } catch (IOException e) {
            throw new ProtocolException(peer() + ": sending " + Protocol.typeName(type) + " #" + sendSeq + " failed: " + e.getMessage(), e);
        }
    }

    /**
     * Receives the next frame, checking magic, version, length, CRC32C and sequence number.
     * @param waitingFor what this side waits for, for the timeout message ("the reply to request 7")
     * @throws ProtocolException naming the peer and the frame when anything is wrong or the peer is silent
     */
    public Frame receive(String waitingFor) {
        long seq = recvSeq + 1;
        readFully(recvBuf, 0, Protocol.HEADER_BYTES, waitingFor, "the header of message #" + seq);
        ByteBuffer h = ByteBuffer.wrap(recvBuf, 0, Protocol.HEADER_BYTES);
        int magic = h.getInt(Protocol.OFF_MAGIC);
        if (magic != Protocol.MAGIC) {
            throw new ProtocolException(String.format("%s: message #%d does not start with the magic \"FLMG\" (found 0x%08x): not a faultline migration peer",
                    peer(), seq, magic));
        }
        int version = h.get(Protocol.OFF_VERSION) & 0xff;
        int type = h.get(Protocol.OFF_TYPE) & 0xff;
        if (version != Protocol.VERSION) {
            throw new ProtocolException(peer() + ": message #" + seq + " (" + Protocol.typeName(type) + ") speaks protocol version " + version
                    + ", this side speaks version " + Protocol.VERSION);
        }
        long gotSeq = h.getLong(Protocol.OFF_SEQ);
        int len = h.getInt(Protocol.OFF_LENGTH);
        String what = Protocol.typeName(type) + " #" + gotSeq;
        if (len < 0 || len > Protocol.MAX_PAYLOAD) {
            throw new ProtocolException(peer() + ": message " + what + " announces a payload of " + Integer.toUnsignedString(len)
                    + " bytes, more than the " + Protocol.MAX_PAYLOAD + " allowed");
        }
        if (recvBuf.length < Protocol.HEADER_BYTES + len) recvBuf = java.util.Arrays.copyOf(recvBuf, Protocol.HEADER_BYTES + len);
        readFully(recvBuf, Protocol.HEADER_BYTES, len, waitingFor, "the " + len + "-byte payload of " + what);
        recvCrc.reset();
        recvCrc.update(recvBuf, 0, Protocol.CRC_COVERED_HEADER);
        recvCrc.update(recvBuf, Protocol.HEADER_BYTES, len);
        int want = ByteBuffer.wrap(recvBuf).getInt(Protocol.OFF_CRC);
        if ((int) recvCrc.getValue() != want) {
            throw new ProtocolException(String.format("%s: message %s is corrupted: CRC32C 0x%08x, the header says 0x%08x; nothing of it was used",
                    peer(), what, (int) recvCrc.getValue(), want));
        }
        if (gotSeq != seq) {
            throw new ProtocolException(peer() + ": message " + what + " arrived where #" + seq + " was due (a message was lost or repeated)");
        }
        recvSeq = seq;
        bytesReceived.addAndGet(Protocol.HEADER_BYTES + len);
        return new Frame(type, seq, ByteBuffer.wrap(recvBuf, Protocol.HEADER_BYTES, len).slice());
    }

    private void readFully(byte[] buf, int off, int len, String waitingFor, String part) {
        int got = 0;
        try {
            while (got < len) {
                int n = in.read(buf, off + got, len - got);
                if (n < 0) throw new EOFException();
                got += n;
            }
        } catch (SocketTimeoutException e) {
            throw new ProtocolException(peer() + " went silent: nothing for " + timeoutMillis() + " ms while this side waited for "
                    + waitingFor + " (" + part + ", " + got + " of " + len + " bytes read)", e);
        } catch (EOFException e) {
            throw new ProtocolException(got == 0 && part.startsWith("the header")
                    ? peer() + " closed the connection while this side waited for " + waitingFor
                    : peer() + ": truncated message: the connection ended after " + got + " of " + len + " bytes of " + part
                    + "; nothing of it was used", e);
        } catch (IOException e) {
            throw new ProtocolException(peer() + ": reading " + part + " failed: " + e.getMessage(), e);
        }
    }

    private int timeoutMillis() {
        try {
            return socket.getSoTimeout();
        } catch (IOException e) {
            return -1;
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
        try {
            socket.close();
        } catch (IOException ignored) {
            // closing a socket that failed already: nothing left to release
        }
    }
}
