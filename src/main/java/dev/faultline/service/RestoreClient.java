package dev.faultline.service;

import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** A connection to a {@link RestoreService}: sends request lines and reads the reply to each. */
public final class RestoreClient implements AutoCloseable {
    /** Longest reply accepted (a report with every vCPU's exit log stays far below). */
    private static final int MAX_REPLY = 64 << 20;

    private final Path socket;
    private final SocketChannel channel;
    private final InputStream in;
    private final OutputStream out;

    private RestoreClient(Path socket, SocketChannel channel) {
        this.socket = socket;
        this.channel = channel;
        this.in = new BufferedInputStream(Channels.newInputStream(channel));
        this.out = Channels.newOutputStream(channel);
    }

    /** @throws IllegalArgumentException when no service listens on {@code socket} (the message says how to start one) */
    public static RestoreClient connect(Path socket) {
        if (!Files.exists(socket)) {
            throw new IllegalArgumentException("no restore service at " + socket + " (start one with: faultline serve --socket " + socket + ")");
        }
        try {
            SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX);
            try {
                c.connect(UnixDomainSocketAddress.of(socket));
            } catch (IOException e) {
                c.close();
                throw e;
            }
            return new RestoreClient(socket, c);
        } catch (IOException e) {
            throw new IllegalArgumentException("no restore service answers at " + socket + " (" + e.getMessage()
                    + "; start one with: faultline serve --socket " + socket + ")", e);
        }
    }

    /**
     * Sends one request line and returns the reply (after the restored guest has ended).
     * @throws UncheckedIOException when the connection fails or the service ends without answering
     */
    public Map<String, Object> send(String requestLine) {
        try {
            out.write((requestLine + "\n").getBytes(StandardCharsets.UTF_8));
            out.flush();
            String reply = RestoreService.readLine(in, MAX_REPLY);
            if (reply == null) throw new IOException("the service at " + socket + " closed the connection without answering");
            return ServiceJson.object(reply);
        } catch (IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
    }

    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException ignored) {
            // nothing left to tell the service
        }
    }
}
