package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** uffd-handler's refusals: one line naming the input and the reason, exit code 2, nothing left listening. */
class UffdHandlerCommandTest {
    record Out(int code, String err) {}

    static Out run(String... args) {
        CommandLine cl = Main.commandLine("uffd-handler");
        StringWriter err = new StringWriter();
        cl.setErr(new PrintWriter(err, true));
        String[] all = new String[args.length + 1];
        all[0] = "uffd-handler";
        System.arraycopy(args, 0, all, 1, args.length);
        int code = cl.execute(all);
        return new Out(code, err.toString());
    }

    @Test
    void shouldRefuseBadInputsInOneLineWithExitCode2(@TempDir Path dir) throws Exception {
        Path mem = dir.resolve("mem");
        Files.write(mem, new byte[8192]);
        Path odd = dir.resolve("odd");
        Files.write(odd, new byte[100]);
        Path link = dir.resolve("link");
        Files.createSymbolicLink(link, mem);
        Path open = Files.createDirectory(dir.resolve("open"));
        Files.setPosixFilePermissions(open, PosixFilePermissions.fromString("rwxrwxrwx"));
        String sock = dir.resolve("s").toString();
        String[][] cases = {
                {"--socket", sock, "--mem-file", dir.resolve("none").toString()},
                {"--socket", sock, "--mem-file", odd.toString()},
                {"--socket", sock, "--mem-file", link.toString()},
                {"--socket", open.resolve("s").toString(), "--mem-file", mem.toString()},
                {"--socket", sock, "--mem-file", mem.toString(), "--prefetch", "sometimes"},
                {"--socket", sock, "--mem-file", mem.toString(), "--max-vms", "0"},
                {"--socket", sock, "--mem-file", mem.toString(), "--on-failure", "shrug"},
                {"--socket", sock, "--mem-file", mem.toString(), "--record-ms", "10"},
                {"--socket", sock, "--mem-file", mem.toString(), "--record-working-set", dir.resolve("ws").toString(), "--prefetch", "readahead"},
                {"--socket", sock, "--mem-file", mem.toString(), "--metrics-port", "70000"},
                {"--socket", sock, "--mem-file", mem.toString(), "--events", dir.toString()},
        };
        String[] expected = {"cannot be opened", "positive number of 4 KiB pages", "symbolic link", "writable by other users",
                "--prefetch is none, readahead or replay:FILE", "--max-vms takes 1 to 4096", "--on-failure is close, kill or exit",
                "--record-ms needs --record-working-set", "use --prefetch none", "is not a TCP port", "not a regular file"};
        for (int i = 0; i < cases.length; i++) {
            Out o = run(cases[i]);
            assertEquals(2, o.code(), String.join(" ", cases[i]) + "\n" + o.err());
            assertEquals(1, o.err().strip().lines().count(), o.err());
            assertTrue(o.err().contains(expected[i]), o.err());
            assertFalse(Files.exists(Path.of(sock)), "nothing listens after a refusal");
        }
    }
}
