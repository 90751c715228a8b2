package dev.faultline.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Loading a side's credentials refuses, in one line naming the file and never its contents: links,
 * files that are not regular or too large, a private key others can read or another user owns, a key
 * of another certificate, a certificate of another CA, a CA file holding something else.
 */
class TlsCredentialsTest {
    @TempDir
    Path tmp;
    private Path side, other;

    @BeforeEach
    void certificates() throws Exception {
        TlsInit.create(tmp.resolve("a"), List.of("source", "destination"), 1);
        TlsInit.create(tmp.resolve("b"), List.of("source"), 1);
        side = tmp.resolve("a").resolve("source");
        other = tmp.resolve("b").resolve("source");
    }

    private String refusal() {
        CredentialsException e = assertThrows(CredentialsException.class, () -> TlsCredentials.load(side));
        assertFalse(e.getMessage().contains("BEGIN") || e.getMessage().contains("\n"), e.getMessage());
        return e.getMessage();
    }

    @Test
    void shouldLoadASetMadeByTlsInitWithItsNames() throws Exception {
        TlsCredentials c = TlsCredentials.load(side);
        assertEquals(List.of("source"), c.names());
        assertEquals(side, c.dir());
    }

    @Test
    void shouldRefuseASymbolicLinkAndANonRegularFile() throws Exception {
        Path key = side.resolve("key.pem");
        Path moved = Files.move(key, tmp.resolve("key-elsewhere.pem"));
        Files.createSymbolicLink(key, moved);
        assertEquals(key + " is a symbolic link; name the file itself", refusal());
        Files.delete(key);
        Files.createDirectory(key);
        assertEquals(key + " is not a regular file", refusal());
    }

    @Test
    void shouldRefuseAFileLargerThan64KiB() throws Exception {
        Path cert = side.resolve("cert.pem");
        Files.write(cert, new byte[70_000]);
        assertEquals(cert + " is 70000 bytes, more than the 65536 a credential file may have", refusal());
    }

    @Test
    void shouldRefuseAKeyOthersMayReadOrAnotherUserOwns() throws Exception {
        Path key = side.resolve("key.pem");
        Files.setPosixFilePermissions(key, PosixFilePermissions.fromString("rw----r--"));
        assertEquals(key + " is open to group or others (mode 0604); a private key must be 0600 or 0400 (chmod 600 " + key + ")", refusal());
        Files.setPosixFilePermissions(key, PosixFilePermissions.fromString("rw-------"));
        assumeTrue(SafeFiles.uid() == 0, "skipped: changing a file's owner needs root");
        Files.setAttribute(key, "unix:uid", 65534);
        assertEquals(key + " is owned by uid 65534, not by this user (uid 0)", refusal());
    }

    @Test
    void shouldRefuseAKeyOfAnotherCertificateAndACertificateOfAnotherCa() throws Exception {
        Files.copy(other.resolve("key.pem"), side.resolve("key.pem"), StandardCopyOption.REPLACE_EXISTING);
        assertEquals(side.resolve("key.pem") + " does not belong to cert.pem (a signature made with it does not verify with the certificate's key)", refusal());
        Files.copy(other.resolve("cert.pem"), side.resolve("cert.pem"), StandardCopyOption.REPLACE_EXISTING);
        assertEquals(side.resolve("cert.pem") + " is not signed by the CA in " + side.resolve("ca.pem") + " (both must come from the same tls init)", refusal());
    }

    @Test
    void shouldRefuseACaFileWithoutACaAndAnOldFormKey() throws Exception {
        Files.copy(side.resolve("cert.pem"), side.resolve("ca.pem"), StandardCopyOption.REPLACE_EXISTING);
        assertEquals(side.resolve("ca.pem") + " holds a certificate that is not a CA ('CN=source' has no CA:true)", refusal());
        Files.copy(tmp.resolve("a").resolve("ca.pem"), side.resolve("ca.pem"), StandardCopyOption.REPLACE_EXISTING);
        Path key = side.resolve("key.pem");
        String pem = Files.readString(key).replace("PRIVATE KEY", "EC PRIVATE KEY");
        Files.writeString(key, pem, StandardCharsets.US_ASCII);
        assertEquals(key + " holds an 'EC PRIVATE KEY' (the older OpenSSL form); convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in OLD -out " + key,
                refusal());
    }

    @Test
    void shouldRefuseADirectoryOthersMayWrite() throws Exception {
        Files.setPosixFilePermissions(side, PosixFilePermissions.fromString("rwxrwxrwx"));
        assertEquals("the TLS directory " + side + " is writable by group or others (mode 0777): its files could be replaced; chmod 700 it", refusal());
    }
}
