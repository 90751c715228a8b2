package dev.faultline.transport;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * One non-blocking byte stream to an authenticated peer (or, {@link #secure()} false, an
 * unauthenticated one on loopback). Made by a {@link Transport}; framing is the caller's.
 *
 * <p>Threading: one thread reads ({@link #read}, {@link #awaitReadable}) while at most one other
 * writes ({@link #write}, {@link #flush}, {@link #awaitWritable}); {@link #close} may come from any
 * thread and ends a wait on another thread with an {@link java.nio.channels.AsynchronousCloseException}.
 * No method allocates per call once the link is made, except inside the JDK's TLS engine (which makes a
 * few objects per TLS record; docs/migration.md "Security").
 */
public interface Link extends AutoCloseable {
    /**
     * Reads what is available now into {@code dst} (which must have room): the number of bytes read,
     * 0 when nothing can be read without waiting, -1 when the peer ended the stream.
     * @throws IOException when the stream fails (for TLS: a record that does not authenticate, an alert)
     */
    int read(ByteBuffer dst) throws IOException;

    /**
     * Takes what it can of {@code src} now without waiting: the number of bytes taken (0: wait until
     * {@link #awaitWritable writable}). Bytes taken may still be buffered in the link: {@link #flush}
     * until it returns 0 before waiting for an answer.
     */
    int write(ByteBuffer src) throws IOException;

    /** Writes buffered bytes out as far as the socket takes them now; returns how many are still buffered. */
    int flush() throws IOException;

    /** Waits until the socket may be readable or {@code millis} pass (0: no limit); may return early. */
    void awaitReadable(long millis) throws IOException;

    /** Waits until the socket may be writable or {@code millis} pass (0: no limit); may return early. */
    void awaitWritable(long millis) throws IOException;

    /** The peer's address, "127.0.0.1:7070". */
    String peerAddress();

    /**
     * The peer's authenticated identity: the name of its certificate that the allow-list accepted
     * ("source"), or "unauthenticated (insecure)" on a plain link.
     */
    String peerIdentity();

    /** Whether the stream is encrypted and the peer authenticated. */
    boolean secure();

    /** What the stream is, for reports: "TLSv1.3 TLS_AES_128_GCM_SHA256" or "plain TCP (insecure)". */
    String protocol();

    /** Closes the stream (for TLS, after a best-effort close_notify); never throws. */
    @Override
    void close();
}
