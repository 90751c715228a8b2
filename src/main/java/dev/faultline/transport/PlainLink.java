package dev.faultline.transport;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/** A plain TCP stream: no encryption, the peer not authenticated. For loopback ({@link Transport#insecure()}). */
public final class PlainLink extends ChannelLink {
    /** Takes a connected {@code channel} over (switched to non-blocking; closed if that fails). */
    public PlainLink(SocketChannel channel) throws IOException {
        super(channel);
    }

    @Override
    public int read(ByteBuffer dst) throws IOException { return channel.read(dst); }

    @Override
    public int write(ByteBuffer src) throws IOException { return channel.write(src); }

    @Override
    public int flush() { return 0; }

    @Override
    public String peerIdentity() { return "unauthenticated (insecure)"; }

    @Override
    public boolean secure() { return false; }

    @Override
    public String protocol() { return "plain TCP (insecure)"; }

    @Override
    public void close() { closeChannel(); }
}
