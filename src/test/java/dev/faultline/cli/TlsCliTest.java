package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `tls init` and the TLS options of `migrate listen/send` as a user meets them: files and modes, one line and rc 2 for every refusal. */
class TlsCliTest {
    @TempDir
    Path tmp;

    private static String mode(Path p) throws Exception {
        return PosixFilePermissions.toString(Files.getPosixFilePermissions(p, LinkOption.NOFOLLOW_LINKS));
    }

    @Test
    void shouldMakeACaAndOneDirectoryPerNameWithPrivateModes() throws Exception {
        Path certs = tmp.resolve("certs");
        CliCapture.Outcome o = CliCapture.run("tls", "init", certs.toString(), "--names", "source,destination", "--days", "2");
        assertEquals(0, o.code(), o.err());
        assertTrue(o.out().contains("--tls-dir " + certs.resolve("destination") + " --tls-allow source"), o.out());
        assertEquals("rwx------", mode(certs));
        assertTrue(Files.isRegularFile(certs.resolve("ca.pem")));
        for (String name : new String[] {"source", "destination"}) {
            Path side = certs.resolve(name);
            assertEquals("rwx------", mode(side), name);
            assertEquals("rw-------", mode(side.resolve("key.pem")), name);
            assertFalse(mode(side.resolve("cert.pem")).substring(3).contains("w"), name); // nobody but the owner writes it
            try (var files = Files.list(side)) {
                assertEquals(java.util.Set.of("ca.pem", "cert.pem", "key.pem"), files.map(p -> p.getFileName().toString()).collect(java.util.stream.Collectors.toSet()));
            }
        }
        try (var files = Files.list(certs)) {
            assertTrue(files.noneMatch(p -> p.getFileName().toString().contains("key")), "the CA's key is not kept");
        }
    }

    @Test
    void shouldRefuseAnExistingNonEmptyDirectoryAndAPlantedSymlink() throws Exception {
        Path full = Files.createDirectory(tmp.resolve("full"));
        Files.createSymbolicLink(full.resolve("source"), tmp.resolve("elsewhere"));
        CliCapture.Outcome o = CliCapture.run("tls", "init", full.toString(), "--names", "source");
        assertEquals(2, o.code());
        assertEquals("faultline tls init: " + full + " is not empty; name a new or empty directory", o.err().strip());
        assertFalse(Files.exists(tmp.resolve("elsewhere")), "nothing written through the planted link");

        Path target = Files.createDirectory(tmp.resolve("target"));
        Path link = Files.createSymbolicLink(tmp.resolve("link"), target);
        o = CliCapture.run("tls", "init", link.toString(), "--names", "source");
        assertEquals(2, o.code());
        assertEquals("faultline tls init: " + link + " is a symbolic link; name a new directory", o.err().strip());
        try (var files = Files.list(target)) {
            assertEquals(0, files.count());
        }

        o = CliCapture.run("tls", "init", tmp.resolve("x").toString(), "--names", "../evil");
        assertEquals(2, o.code());
        assertTrue(o.err().contains("the name '../evil' is not 1 to 64 of A-Z a-z 0-9 . _ -"), o.err());
    }

    @Test
    void shouldRefuseToMigrateWithoutTlsOrWithInsecureOffLoopback() {
        CliCapture.Outcome o = CliCapture.run("migrate", "listen", "--port", "0");
        assertEquals(2, o.code());
        assertTrue(o.err().startsWith("faultline migrate listen: needs --tls-dir DIR with --tls-allow NAME,..."), o.err());
        assertEquals(1, o.err().strip().lines().count(), o.err());

        o = CliCapture.run("migrate", "listen", "--port", "0", "--bind", "0.0.0.0", "--insecure");
        assertEquals(2, o.code());
        assertEquals("faultline migrate listen: --insecure is refused for --bind 0.0.0.0: plain TCP only on a loopback address; "
                + "use --tls-dir DIR --tls-allow NAME (faultline tls init makes certificates)", o.err().strip());

        o = CliCapture.run("migrate", "send", "--to", "192.0.2.7:7070", "--insecure", "--workload", "phases");
        assertEquals(2, o.code());
        assertTrue(o.err().startsWith("faultline migrate send: --insecure is refused for --to 192.0.2.7: plain TCP only on a loopback address"), o.err());

        o = CliCapture.run("migrate", "send", "--to", "127.0.0.1:7070", "--insecure", "--tls-dir", "x", "--workload", "phases");
        assertEquals(2, o.code());
        assertEquals("faultline migrate send: --insecure excludes --tls-dir and --tls-allow", o.err().strip());
    }

    @Test
    void shouldRefuseUnusableCredentialsInOneLineNamingTheFile() throws Exception {
        Path certs = tmp.resolve("certs");
        assertEquals(0, CliCapture.run("tls", "init", certs.toString(), "--names", "source,destination").code());
        Path dst = certs.resolve("destination");
        CliCapture.Outcome o = CliCapture.run("migrate", "listen", "--port", "0", "--tls-dir", dst.toString());
        assertEquals(2, o.code());
        assertEquals("faultline migrate listen: --tls-dir needs --tls-allow NAME,...: the certificate names of the peers this side accepts", o.err().strip());

        Files.setPosixFilePermissions(dst.resolve("key.pem"), PosixFilePermissions.fromString("rw-r-----"));
        o = CliCapture.run("migrate", "listen", "--port", "0", "--tls-dir", dst.toString(), "--tls-allow", "source");
        assertEquals(2, o.code());
        assertEquals("faultline migrate listen: " + dst.resolve("key.pem") + " is open to group or others (mode 0640); a private key must be 0600 "
                + "or 0400 (chmod 600 " + dst.resolve("key.pem") + ")", o.err().strip());
        assertFalse(o.err().contains("BEGIN"), "never the file's contents");
    }
}
