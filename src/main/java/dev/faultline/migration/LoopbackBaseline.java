package dev.faultline.migration;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;

/**
 * How long this machine needs to move {@code bytes} through one loopback TCP connection, writer and
 * reader in this process, 256 KiB per write: the yardstick the migration's total time is compared
 * with (the same run measures both, so both see the same machine load).
 */
public final class LoopbackBaseline {
    private LoopbackBaseline() {}

    /** Nanoseconds from the first byte written to the last byte read. */
    public static long measure(long bytes) throws IOException {
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            server.setSoTimeout(10_000);
            long[] readDone = new long[1];
            IOException[] readFailed = new IOException[1];
            Thread reader;
            try (Socket out = new Socket(InetAddress.getLoopbackAddress(), server.getLocalPort()); Socket in = server.accept()) {
                in.setSoTimeout(60_000);
                reader = Thread.ofPlatform().name("loopback-baseline-reader").start(() -> {
                    byte[] buf = new byte[256 << 10];
                    long got = 0;
                    try (InputStream is = in.getInputStream()) {
                        while (got < bytes) {
                            int n = is.read(buf);
                            if (n < 0) throw new IOException("the loopback connection ended after " + got + " of " + bytes + " bytes");
                            got += n;
                        }
                        readDone[0] = System.nanoTime();
                    } catch (IOException e) {
                        readFailed[0] = e;
                    }
                });
                byte[] chunk = new byte[256 << 10];
                for (int i = 0; i < chunk.length; i++) chunk[i] = (byte) (i * 31 + 7);
                long t0 = System.nanoTime();
                OutputStream os = out.getOutputStream();
                for (long sent = 0; sent < bytes; sent += chunk.length) os.write(chunk, 0, (int) Math.min(chunk.length, bytes - sent));
                os.flush();
                try {
                    reader.join(60_000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while measuring the loopback baseline", e);
                }
                if (readFailed[0] != null) throw readFailed[0];
                if (readDone[0] == 0) throw new IOException("the loopback baseline did not finish within 60 s");
                return readDone[0] - t0;
            }
        }
    }
}
