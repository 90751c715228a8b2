package dev.faultline.transport;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.channels.SocketChannel;

/** Plain TCP: links are {@link PlainLink}s, nobody is checked. */
final class InsecureTransport implements Transport {
    static final InsecureTransport INSTANCE = new InsecureTransport();

    private InsecureTransport() {}

    /** A connected channel to {@code host:port} (the TCP connect bounded by {@code timeoutMillis}), closed if it fails. */
    static SocketChannel open(String host, int port, int timeoutMillis) throws IOException {
        SocketChannel ch = SocketChannel.open();
        try {
            ch.socket().connect(new InetSocketAddress(host, port), timeoutMillis);
            return ch;
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    @Override
    public Link connect(String host, int port, int timeoutMillis) throws IOException {
        return new PlainLink(open(host, port, timeoutMillis));
    }

    @Override
    public Link accept(SocketChannel accepted, int timeoutMillis) throws PeerRefusedException {
        String peer = ChannelLink.address(accepted);
        try {
            return new PlainLink(accepted);
        } catch (IOException e) {
            throw new PeerRefusedException(peer, "the connection failed: " + e.getMessage(), e);
        }
    }

    @Override
    public boolean secure() { return false; }

    @Override
    public String describe() { return "plain TCP (insecure)"; }
}
