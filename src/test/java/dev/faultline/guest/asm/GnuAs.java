package dev.faultline.guest.asm;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/** Runs GNU as (Intel syntax, 64-bit) and objcopy to get the bytes of a .text section. */
final class GnuAs {
    private GnuAs() {}

    static Optional<Path> tool(String name) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, name);
            if (Files.isExecutable(p)) return Optional.of(p);
        }
        return Optional.empty();
    }

    /** Why the comparison cannot run here, or empty when GNU as and objcopy are both present. */
    static Optional<String> unavailableReason() {
        if (tool("as").isEmpty()) return Optional.of("GNU as is not on PATH (install binutils to compare encodings)");
        if (tool("objcopy").isEmpty()) return Optional.of("objcopy is not on PATH (install binutils to compare encodings)");
        return Optional.empty();
    }

    /** Assembles Intel-syntax {@code source} and returns the .text bytes. */
    static byte[] assemble(String source) throws IOException, InterruptedException {
        Path dir = Files.createTempDirectory("faultline-as");
        try {
            Path s = dir.resolve("t.s"), o = dir.resolve("t.o"), bin = dir.resolve("t.bin");
            Files.writeString(s, ".intel_syntax noprefix\n.text\n" + source + "\n", StandardCharsets.UTF_8);
            run(dir, List.of(tool("as").orElseThrow().toString(), "--64", "-o", o.toString(), s.toString()));
            run(dir, List.of(tool("objcopy").orElseThrow().toString(), "-O", "binary", "-j", ".text", o.toString(), bin.toString()));
            return Files.readAllBytes(bin);
        } finally {
            try (var files = Files.list(dir)) {
                for (Path p : files.toList()) Files.deleteIfExists(p);
            }
            Files.deleteIfExists(dir);
        }
    }

    private static void run(Path dir, List<String> cmd) throws IOException, InterruptedException {
        Path log = dir.resolve("log.txt");
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(log.toFile()).start();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException(cmd.getFirst() + " timed out");
        }
        if (p.exitValue() != 0) {
            throw new IOException(String.join(" ", cmd) + " failed (exit " + p.exitValue() + "):\n" + Files.readString(log));
        }
    }

    static String hex(byte[] b, int from, int to) {
        StringBuilder sb = new StringBuilder();
        for (int i = from; i < to; i++) {
            if (i > from) sb.append(' ');
            sb.append(String.format("%02x", b[i] & 0xff));
        }
        return sb.toString();
    }
}
