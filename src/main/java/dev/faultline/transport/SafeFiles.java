package dev.faultline.transport;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.EnumSet;
import java.util.Objects;
import java.util.Set;

/**
 * Reading and writing credential files without being led elsewhere: no symbolic links followed, only
 * regular files, bounded reads, files made with O_EXCL. Every refusal is a {@link CredentialsException}
 * whose message is one line naming the file, never its contents.
 */
final class SafeFiles {
    private SafeFiles() {}

    /** Largest credential file read (a PEM certificate chain or key is a few KiB). */
    static final int MAX_BYTES = 64 << 10;

    /** The uid of this process (owner of what it makes, and of a private key it accepts). */
    static long uid() {
        return new com.sun.security.auth.module.UnixSystem().getUid();
    }

    /** "0640" */
    static String mode(Set<PosixFilePermission> perms) {
        int m = 0;
        for (PosixFilePermission p : perms) m |= 1 << (8 - p.ordinal());
        return String.format("0%03o", m);
    }

    /** The attributes of {@code p} itself (a link is not followed), or a refusal when it is missing. */
    static PosixFileAttributes lstat(Path p) throws CredentialsException {
        try {
            return Files.readAttributes(p, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            throw new CredentialsException(p + " does not exist");
        } catch (IOException | UnsupportedOperationException e) {
            throw new CredentialsException("cannot read the attributes of " + p + ": " + e.getMessage());
        }
    }

    static long ownerUid(Path p) throws CredentialsException {
        try {
            return ((Number) Files.getAttribute(p, "unix:uid", LinkOption.NOFOLLOW_LINKS)).longValue();
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
            throw new CredentialsException("cannot read the owner of " + p + ": " + e.getMessage());
        }
    }

    /**
     * The bytes of the regular file {@code p} (at most {@link #MAX_BYTES}), opened without following
     * a symbolic link. With {@code secret}: refused unless owned by this process's uid and unreadable
     * by group and others.
     */
    static byte[] read(Path p, boolean secret) throws CredentialsException {
        PosixFileAttributes a = lstat(p);
        if (a.isSymbolicLink()) throw new CredentialsException(p + " is a symbolic link; name the file itself");
        if (!a.isRegularFile()) throw new CredentialsException(p + " is not a regular file");
        if (a.size() > MAX_BYTES) throw new CredentialsException(p + " is " + a.size() + " bytes, more than the " + MAX_BYTES + " a credential file may have");
        if (secret) {
            long owner = ownerUid(p), me = uid();
            if (owner != me) throw new CredentialsException(p + " is owned by uid " + owner + ", not by this user (uid " + me + ")");
            Set<PosixFilePermission> perms = a.permissions();
            Set<PosixFilePermission> open = EnumSet.of(PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
                    PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE);
            open.retainAll(perms);
            if (!open.isEmpty()) {
                throw new CredentialsException(p + " is open to group or others (mode " + mode(perms) + "); a private key must be 0600 or 0400 (chmod 600 " + p + ")");
            }
        }
        byte[] bytes;
        try (SeekableByteChannel ch = Files.newByteChannel(p, Set.<OpenOption>of(StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS))) {
            ByteBuffer b = ByteBuffer.allocate(MAX_BYTES + 1);
            while (b.hasRemaining() && ch.read(b) >= 0) {
                // read to the end or one byte past the bound
            }
            if (b.position() > MAX_BYTES) throw new CredentialsException(p + " grew past " + MAX_BYTES + " bytes while it was read");
            bytes = new byte[b.position()];
            b.flip().get(bytes);
        } catch (IOException e) {
            throw new CredentialsException("cannot read " + p + ": " + e.getMessage());
        }
        // the file read is the file checked (not swapped for another between the check and the open)
        if (!Objects.equals(lstat(p).fileKey(), a.fileKey())) throw new CredentialsException(p + " was replaced while it was read");
        return bytes;
    }

    /**
     * Writes {@code bytes} to the new file {@code p} with {@code mode} ("rw-------"): O_CREAT|O_EXCL
     * and O_NOFOLLOW, so an existing file or a planted symbolic link there is refused, never written through.
     */
    static void create(Path p, byte[] bytes, String mode) throws IOException {
        FileAttribute<Set<PosixFilePermission>> perms = PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString(mode));
        try (SeekableByteChannel ch = Files.newByteChannel(p, Set.<OpenOption>of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                LinkOption.NOFOLLOW_LINKS), perms)) {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        }
        // (the umask may have taken bits from the mode, never added any)
    }
}
