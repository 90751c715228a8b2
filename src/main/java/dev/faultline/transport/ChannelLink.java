package dev.faultline.transport;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.channels.AsynchronousCloseException;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.function.Consumer;

/** What both links over a TCP socket share: the channel in non-blocking mode, a selector per direction, the peer's address. */
abstract sealed class ChannelLink implements Link permits PlainLink, TlsLink {
    private static final Consumer<SelectionKey> NOTHING = k -> { };

    final SocketChannel channel;
    private final String peer;
    private final Selector readable, writable;

    /** Takes {@code channel} (connected) over: no delay, non-blocking, a selector per direction; closes it if that fails. */
    ChannelLink(SocketChannel channel) throws IOException {
        this.channel = channel;
        try {
            this.peer = address(channel);
            channel.socket().setTcpNoDelay(true);
            channel.configureBlocking(false);
            this.readable = Selector.open();
            Selector w = null;
            try {
                w = Selector.open();
                channel.register(readable, SelectionKey.OP_READ);
                channel.register(w, SelectionKey.OP_WRITE);
            } catch (IOException | RuntimeException e) {
                readable.close();
                if (w != null) w.close();
                throw e;
            }
            this.writable = w;
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
    }

    /** "127.0.0.1:7070" for a connected channel, "unknown" where it has no address (closed meanwhile). */
    static String address(SocketChannel channel) {
        try {
            if (channel.getRemoteAddress() instanceof InetSocketAddress a) return a.getAddress().getHostAddress() + ":" + a.getPort();
        } catch (IOException ignored) {
            // closed: no address to name
        }
        return "unknown";
    }

    @Override
    public final String peerAddress() { return peer; }

    @Override
    public final void awaitReadable(long millis) throws IOException { await(readable, millis); }

    @Override
    public final void awaitWritable(long millis) throws IOException { await(writable, millis); }

    private static void await(Selector selector, long millis) throws IOException {
        try {
            selector.select(NOTHING, Math.max(0, millis));
        } catch (ClosedSelectorException e) { // close() on another thread while this one waited
            throw new AsynchronousCloseException();
        }
    }

    /** Closes the selectors and the channel; never throws. */
    void closeChannel() {
        try {
            readable.close();
            writable.close();
            channel.close();
        } catch (IOException ignored) {
            // closing a socket that failed already: nothing left to release
        }
    }
}
