package dev.faultline.pageserver;

import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.UnixSocket;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The handler's listening socket, made so that no other user can reach it: its directory must not
 * be writable by others (unless sticky, as /tmp is), the socket is bound inside a fresh private
 * directory (mode 0700) beside it, given mode 0600 there, and only then, already listening, linked
 * under its public name (which fails rather than replace a file someone else put there). A stale
 * socket left by a dead handler is replaced; a live one or any other file is refused.
 */
final class ListeningSocket {
    private ListeningSocket() {}

    private static final AtomicLong SEQUENCE = new AtomicLong();

    /** @throws IllegalArgumentException one line naming the path and the reason */
    static UnixSocket open(Path socket) {
        Path abs = socket.toAbsolutePath();
        int length = abs.toString().getBytes(StandardCharsets.UTF_8).length;
        if (length > UnixSocket.MAX_PATH) {
            throw new IllegalArgumentException("the socket path " + abs + " is " + length + " bytes long; a Unix socket's path holds at most "
                    + UnixSocket.MAX_PATH + " (sun_path)");
        }
        Path dir = abs.getParent();
        checkDirectory(dir);
        claim(abs);
        Path privateDir = dir.resolve(".faultline-uffd-" + ProcessHandle.current().pid() + "-" + SEQUENCE.incrementAndGet());
        Path bound = privateDir.resolve("s");
        if (bound.toString().getBytes(StandardCharsets.UTF_8).length > UnixSocket.MAX_PATH) {
            throw new IllegalArgumentException("the socket's directory " + dir + " is too long a path: the handler binds " + bound
                    + " first, and a Unix socket's path holds at most " + UnixSocket.MAX_PATH + " bytes");
        }
        UnixSocket s = null;
        try {
            Files.createDirectory(privateDir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            s = UnixSocket.listen(bound, 128);
            Files.setPosixFilePermissions(bound, PosixFilePermissions.fromString("rw-------"));
            Files.createLink(abs, bound);
            return s;
        } catch (FileAlreadyExistsException e) {
            if (s != null) s.close();
            throw new IllegalArgumentException("another process took " + abs + " meanwhile", e);
        } catch (IOException | ErrnoException e) {
            if (s != null) s.close();
            throw new IllegalArgumentException("cannot listen on " + abs + ": " + e.getMessage(), e);
        } finally {
            try {
                Files.deleteIfExists(bound);
                Files.deleteIfExists(privateDir);
            } catch (IOException ignored) {
                // a leftover private directory (mode 0700) is harmless
            }
        }
    }

    private static void checkDirectory(Path dir) {
        if (dir == null || !Files.isDirectory(dir)) throw new IllegalArgumentException("the socket's directory " + dir + " does not exist");
        try {
            int mode = (Integer) Files.getAttribute(dir, "unix:mode");
            if ((mode & 0022) != 0 && (mode & 01000) == 0) {
                throw new IllegalArgumentException("the socket's directory " + dir + " is writable by other users (mode "
                        + Integer.toOctalString(mode & 07777) + ") and not sticky: another user could replace the socket; use a directory "
                        + "only the handler's user can write (e.g. mode 0700)");
            }
        } catch (IOException | UnsupportedOperationException e) {
            throw new IllegalArgumentException("the socket's directory " + dir + " cannot be checked: " + e.getMessage(), e);
        }
    }

    /** Makes {@code socket} free to link: nothing there, or a stale socket (no one accepts), which is removed. */
    private static void claim(Path socket) {
        if (!Files.exists(socket, LinkOption.NOFOLLOW_LINKS)) return;
        int mode;
        try {
            mode = (Integer) Files.getAttribute(socket, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        } catch (IOException | UnsupportedOperationException e) {
            throw new IllegalArgumentException(socket + " exists and cannot be checked: " + e.getMessage(), e);
        }
        if ((mode & 0170000) != 0140000) throw new IllegalArgumentException(socket + " exists and is not a socket; name a new path for the handler's socket");
        try {
            UnixSocket.connect(socket).close();
            throw new IllegalArgumentException("a process already listens on " + socket);
        } catch (ErrnoException stale) {
            try {
                Files.deleteIfExists(socket);
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot remove the stale socket " + socket + ": " + e.getMessage(), e);
            }
        }
    }
}
