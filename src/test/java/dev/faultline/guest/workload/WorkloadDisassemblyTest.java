package dev.faultline.guest.workload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The workload images as objdump reads them: valid code, and the page loops as tight as promised. */
class WorkloadDisassemblyTest {
    @TempDir Path dir;

    private List<String> disassemble(Workload w) throws Exception {
        Path objdump = Path.of("/usr/bin/objdump");
        assumeTrue(Files.isExecutable(objdump), "skipped: /usr/bin/objdump is missing (install binutils)");
        Path bin = Files.write(dir.resolve(w.name() + ".bin"), w.image().bytes());
        Process p = new ProcessBuilder(objdump.toString(), "-D", "-b", "binary", "-mi386:x86-64", "-M", "intel",
                "--adjust-vma=0x" + Long.toHexString(w.image().loadGpa()), bin.toString()).redirectErrorStream(true).start();
        List<String> code = new ArrayList<>();
        for (String line : new String(p.getInputStream().readAllBytes()).split("\n")) {
            String[] f = line.split("\t");
            if (f.length < 3) continue;
            code.add(f[2].trim().replaceAll(" +", " "));
            if (f[2].trim().equals("ret")) break; // the report subroutine ends the code; data follows
        }
        assertEquals(0, p.waitFor());
        return code;
    }

    @Test
    void shouldDisassembleEveryWorkloadImageWithoutBadOpcodes() throws Exception {
        for (String name : Workloads.names()) {
            List<String> code = disassemble(Workloads.build(name, WorkloadParams.of(64L << 20, 2)));
            assertFalse(code.stream().anyMatch(l -> l.contains("(bad)")), name + ":\n" + String.join("\n", code));
            assertTrue(code.contains("out 0xf4,eax"), name + " reports done");
            assertTrue(code.contains("hlt"), name + " halts");
        }
    }

    @Test
    void shouldStampEachPageWithFourInstructionsInTheSequentialWriteLoop() throws Exception {
        List<String> code = disassemble(Workloads.build("seq-write", WorkloadParams.of(64L << 20, 1)));
        int i = code.indexOf("mov QWORD PTR [rax+rdx*1],rax");
        assertTrue(i > 0, String.join("\n", code));
        assertEquals("add rax,r8", code.get(i + 1));
        assertEquals("cmp rax,rcx", code.get(i + 2));
        assertTrue(code.get(i + 3).startsWith("jb "), code.get(i + 3));
    }
}
