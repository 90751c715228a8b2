package dev.faultline.guest;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Test helper: compiles a freestanding C file into a flat guest image with gcc and objcopy, using
 * {@link CGuestRuntime}'s crt0, flags and linker script.
 */
final class CGuest {
    private CGuest() {}

    /** Why C guests cannot be built here, or empty. */
    static Optional<String> unavailableReason() {
        if (Tools.find("gcc").isEmpty()) return Optional.of("gcc is not on PATH (needed to compile C guests)");
        if (Tools.find("objcopy").isEmpty()) return Optional.of("objcopy is not on PATH (needed to make flat C guest images)");
        return Optional.empty();
    }

    /** Compiles {@code source} in {@code workDir} and returns the image (load and entry at 0x200000). */
    static GuestImage build(Path source, Path workDir) throws IOException, InterruptedException {
        String stem = source.getFileName().toString().replaceFirst("\\.c$", "");
        Path script = workDir.resolve("c-guest.ld"), elf = workDir.resolve(stem + ".elf"), bin = workDir.resolve(stem + ".bin");
        Files.writeString(script, CGuestRuntime.linkerScript());
        List<String> cc = new ArrayList<>();
        cc.add(Tools.find("gcc").orElseThrow().toString());
        cc.addAll(CGuestRuntime.CC_FLAGS);
        cc.addAll(List.of("-Wall", "-Werror", "-T", script.toString()));
        cc.addAll(CGuestRuntime.LD_FLAGS);
        cc.addAll(List.of("-o", elf.toString(), source.toString()));
        Tools.exec(cc);
        Tools.exec(List.of(Tools.find("objcopy").orElseThrow().toString(), "-O", "binary", elf.toString(), bin.toString()));
        return GuestImage.fromFile(bin, BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
    }
}
