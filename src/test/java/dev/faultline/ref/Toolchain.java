package dev.faultline.ref;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Builds flat guest images with the host's GNU toolchain (as, ld, gcc, objcopy), linked at the boot
 * protocol's load address. Tests skip (assumptions) when a tool is missing.
 */
final class Toolchain {
    private Toolchain() {}

    static final long LOAD = dev.faultline.guest.BootProtocol.DEFAULT_LOAD_GPA;

    static boolean has(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin").split(":")) {
            if (Files.isExecutable(Path.of(dir, tool))) return true;
        }
        return false;
    }

    static void assumeTools(String... tools) {
        for (String t : tools) {
            org.junit.jupiter.api.Assumptions.assumeTrue(has(t), "needs " + t + " (GNU binutils/gcc) on PATH to build guest images");
        }
    }

    /** Assembles GNU-syntax (AT&T unless the source says .intel_syntax) x86-64 code into a flat image; entry at its start. */
    static byte[] assemble(String source) {
        assumeTools("as", "ld", "objcopy");
        try {
            Path dir = Files.createTempDirectory("faultline-asm");
            Files.writeString(dir.resolve("g.s"), source);
            run(dir, "as", "--64", "-o", "g.o", "g.s");
            run(dir, "ld", "-static", "-nostdlib", "-Ttext=0x" + Long.toHexString(LOAD), "-e", "0x" + Long.toHexString(LOAD),
                    "-o", "g.elf", "g.o");
            run(dir, "objcopy", "-O", "binary", "g.elf", "g.bin");
            return Files.readAllBytes(dir.resolve("g.bin"));
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    /** A flat image loaded at {@link #LOAD} and the gpa of its entry point. */
    record Image(byte[] bytes, long entry) {}

    /** Compiles a freestanding C guest (must define {@code entry}) into a flat image. */
    static Image compileC(String source, String opt) {
        assumeTools("gcc", "objcopy");
        try {
            Path dir = Files.createTempDirectory("faultline-c");
            Files.writeString(dir.resolve("g.c"), source);
            List<String> cmd = new ArrayList<>(List.of("gcc", "-ffreestanding", "-nostdlib", "-static", "-fno-pic", "-no-pie", "-mgeneral-regs-only",
                    "-mno-red-zone", "-fno-stack-protector", "-fcf-protection=none", "-fno-asynchronous-unwind-tables",
                    "-Wl,-Ttext=0x" + Long.toHexString(LOAD), "-Wl,--build-id=none", "-e", "entry",
                    "-Wl,-N", "-o", "g.elf", "g.c"));
            cmd.addAll(List.of(opt.trim().split("\\s+")));
            run(dir, cmd.toArray(new String[0]));
            run(dir, "objcopy", "-O", "binary", "--only-section=.text*", "--only-section=.rodata*", "--only-section=.data*",
                    "--only-section=.bss*", "g.elf", "g.bin");
            long entry = -1;
            for (String line : run(dir, "nm", "g.elf").split("\n")) {
                String[] f = line.trim().split("\\s+");
                if (f.length == 3 && f[2].equals("entry")) entry = Long.parseUnsignedLong(f[0], 16);
            }
            if (entry < 0) throw new IOException("guest defines no entry symbol");
            return new Image(Files.readAllBytes(dir.resolve("g.bin")), entry);
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    /** Compiles and runs a host program; returns its stdout. */
    static String runNative(String cSource, String... extraFiles) {
        assumeTools("gcc");
        try {
            Path dir = Files.createTempDirectory("faultline-native");
            Files.writeString(dir.resolve("n.c"), cSource);
            List<String> cmd = new ArrayList<>(List.of("gcc", "-O1", "-o", "n", "n.c"));
            for (int i = 0; i < extraFiles.length; i += 2) {
                Files.writeString(dir.resolve(extraFiles[i]), extraFiles[i + 1]);
                cmd.add(extraFiles[i]);
            }
            run(dir, cmd.toArray(new String[0]));
            return run(dir, dir.resolve("n").toString());
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    static String run(Path dir, String... cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        try {
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(String.join(" ", cmd) + " timed out");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
        String s = new String(out);
        if (p.exitValue() != 0) throw new IOException(String.join(" ", cmd) + " failed (" + p.exitValue() + "):\n" + s);
        return s;
    }
}
