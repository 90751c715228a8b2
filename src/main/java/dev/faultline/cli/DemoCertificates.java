package dev.faultline.cli;

import dev.faultline.transport.CredentialsException;
import dev.faultline.transport.TlsCredentials;
import dev.faultline.transport.TlsInit;
import dev.faultline.transport.Transport;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * The demo's TLS credentials: a throwaway CA and certificates for "source" and "destination", made by
 * the code of {@code faultline tls init} in a temporary directory (0700) that {@link #close} removes.
 */
final class DemoCertificates implements AutoCloseable {
    private final Path dir;

    private DemoCertificates(Path dir) {
        this.dir = dir;
    }

    static DemoCertificates make() {
        Path dir;
        try {
            dir = Files.createTempDirectory("faultline-demo-tls-", PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        } catch (IOException e) {
            throw new UserError("cannot make a temporary directory for the demo's certificates: " + e.getMessage());
        }
        DemoCertificates c = new DemoCertificates(dir);
        try {
            TlsInit.create(dir, List.of("source", "destination"), 1);
            return c;
        } catch (IOException e) {
            c.close();
            throw new UserError("cannot make the demo's certificates in " + dir + ": " + e.getMessage());
        }
    }

    /** The source's transport: its certificate, sending only to "destination". */
    Transport source() {
        try {
            return Transport.tls(TlsCredentials.load(dir.resolve("source")), List.of("destination"));
        } catch (CredentialsException e) {
            throw new UserError(e.getMessage());
        }
    }

    /** The options of the destination process: its certificate, accepting only "source". */
    List<String> destinationArgs() {
        return List.of("--tls-dir", dir.resolve("destination").toString(), "--tls-allow", "source");
    }

    @Override
    public void close() {
        try (Stream<Path> all = Files.walk(dir)) {
            for (Path p : all.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        } catch (IOException e) {
            System.err.println("faultline demo: could not remove the temporary certificates in " + dir + ": " + e.getMessage());
        }
    }
}
