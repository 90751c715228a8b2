package dev.faultline.guest;

import static dev.faultline.guest.BootProtocol.*;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * Test-only: runs a guest image on bare KVM through src/test/c/kvm-run.c (compiled with gcc on first
 * use), so that guest tests check real runs before faultline's backends exist. Entry state comes
 * from {@link BootSetup}, memory from {@link GuestImage#installWithSystemTables}.
 */
final class KvmHarness {
    private KvmHarness() {}

    private static Path binary;

    /** Why guests cannot run here, or empty. */
    static Optional<String> unavailableReason() {
        Path kvm = Path.of("/dev/kvm");
        if (!Files.exists(kvm)) return Optional.of("/dev/kvm does not exist (no KVM on this machine)");
        if (!Files.isReadable(kvm) || !Files.isWritable(kvm)) return Optional.of("/dev/kvm is not readable and writable by this user");
        if (Tools.find("gcc").isEmpty()) return Optional.of("gcc is not on PATH (needed to build the KVM test runner)");
        return Optional.empty();
    }

    /** One exit as the runner saw it: kind "io-out", "io-in", "hlt", "shutdown", "other", "error". */
    record Exit(String kind, int port, int size, long value) {
        static Exit out(int port, long value) { return new Exit("io-out", port, 4, value); }
    }

    /** The run: exits per vCPU in order, final registers (Regs.REPORT_ORDER) per vCPU, and the RAM file. */
    record Run(Map<Integer, List<Exit>> exits, Map<Integer, long[]> regs, Path ramFile, long memSize) {
        /** The 32-bit values vCPU {@code v} sent to {@code port}. */
        List<Long> outs(int v, int port) {
            return exits.get(v).stream().filter(e -> e.kind.equals("io-out") && e.port == port).map(Exit::value).toList();
        }

        long reg(int v, String name) {
            int i = List.of(dev.faultline.hv.Regs.REPORT_ORDER).indexOf(name);
            return regs.get(v)[i];
        }

        /** Maps the final RAM and gives it to {@code check}. */
        void withRam(Consumer<MemorySegment> check) throws IOException {
            try (Arena arena = Arena.ofConfined(); FileChannel ch = FileChannel.open(ramFile, StandardOpenOption.READ)) {
                check.accept(ch.map(FileChannel.MapMode.READ_ONLY, 0, memSize, arena));
            }
        }
    }

    /**
     * Runs {@code image} on {@code vcpus} vCPUs with {@code memSize} bytes of RAM; {@code prepare}
     * may fill RAM first (after the image and system tables are written).
     */
    static Run run(GuestImage image, long memSize, int vcpus, Path dir, Consumer<MemorySegment> prepare)
            throws IOException, InterruptedException {
        Path ramFile = dir.resolve("ram.bin");
        try (Arena arena = Arena.ofConfined();
             FileChannel ch = FileChannel.open(ramFile, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ch.truncate(0);
            MemorySegment ram = ch.map(FileChannel.MapMode.READ_WRITE, 0, memSize, arena);
            image.installWithSystemTables(ram, memSize);
            prepare.accept(ram);
            ram.force();
        }
        List<String> cmd = List.of(runner().toString(), ramFile.toString(), hex(memSize), Integer.toString(vcpus),
                hex(image.entry()), hex(BootSetup.CR0), hex(PML4_GPA), hex(BootSetup.CR4), hex(BootSetup.EFER),
                hex(GDT_GPA), hex(SEL_TSS + 16 - 1), hex(TSS_GPA), hex(STACKS_TOP), hex(STACK_SIZE));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] output = p.getInputStream().readAllBytes();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("kvm-run timed out");
        }
        String text = new String(output, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) throw new IOException("kvm-run failed (exit " + p.exitValue() + "): " + text);
        Map<Integer, List<Exit>> exits = new HashMap<>();
        Map<Integer, long[]> regs = new HashMap<>();
        for (String line : text.split("\n")) {
            String[] f = line.trim().split(" ");
            if (f.length < 2) continue;
            int v = Integer.parseInt(f[1], 16);
            if (f[0].equals("exit")) {
                Exit e = switch (f[2]) {
                    case "io-out" -> new Exit("io-out", Integer.parseInt(f[3], 16), Integer.parseInt(f[4], 16), Long.parseUnsignedLong(f[5], 16));
                    case "io-in" -> new Exit("io-in", Integer.parseInt(f[3], 16), Integer.parseInt(f[4], 16), 0);
                    default -> new Exit(f[2], 0, 0, f.length > 3 ? Long.parseLong(f[3], 16) : 0);
                };
                exits.computeIfAbsent(v, k -> new ArrayList<>()).add(e);
            } else if (f[0].equals("regs")) {
                long[] r = new long[f.length - 2];
                for (int i = 0; i < r.length; i++) r[i] = Long.parseUnsignedLong(f[i + 2], 16);
                regs.put(v, r);
            }
        }
        return new Run(exits, regs, ramFile, memSize);
    }

    private static synchronized Path runner() throws IOException, InterruptedException {
        if (binary != null) return binary;
        Path src = Path.of("src/test/c/kvm-run.c").toAbsolutePath();
        Path out = Path.of(System.getProperty("java.io.tmpdir"), "faultline-kvm-run-" + ProcessHandle.current().pid());
        Tools.exec(List.of(Tools.find("gcc").orElseThrow().toString(), "-O2", "-Wall", "-o", out.toString(), src.toString(), "-lpthread"));
        out.toFile().deleteOnExit();
        binary = out;
        return out;
    }

    private static String hex(long v) { return "0x" + Long.toHexString(v); }
}
