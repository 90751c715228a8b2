package dev.faultline.guest.asm;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;

/** One instruction written twice: as GNU as Intel syntax and as assembler calls. */
record AsmCase(String gas, Consumer<Assembler> java) {
    static final int SLOT = 16;

    byte[] ours() {
        Assembler a = new Assembler(0x200000);
        java.accept(a);
        return a.assemble();
    }

    /**
     * Assembles every case with GNU as in one file, each in its own 16-byte slot padded with int3,
     * and returns one message per case whose bytes differ (empty when all agree).
     */
    static List<String> mismatches(List<AsmCase> cases) throws IOException, InterruptedException {
        StringBuilder src = new StringBuilder();
        for (AsmCase c : cases) src.append(c.gas).append("\n.balign 16, 0xcc\n");
        byte[] theirs = GnuAs.assemble(src.toString());
        List<String> bad = new ArrayList<>();
        if (theirs.length != cases.size() * SLOT) {
            bad.add("GNU as produced " + theirs.length + " bytes for " + cases.size() + " slots of " + SLOT
                    + " (an instruction longer than a slot?)");
            return bad;
        }
        for (int i = 0; i < cases.size(); i++) {
            AsmCase c = cases.get(i);
            byte[] ours;
            try {
                ours = c.ours();
            } catch (RuntimeException e) {
                bad.add(c.gas + ": our assembler refused it: " + e.getMessage());
                continue;
            }
            byte[] slot = Arrays.copyOf(ours, SLOT);
            Arrays.fill(slot, ours.length, SLOT, (byte) 0xcc);
            byte[] want = Arrays.copyOfRange(theirs, i * SLOT, (i + 1) * SLOT);
            if (ours.length > SLOT || !Arrays.equals(slot, want)) {
                bad.add(c.gas + ": ours " + GnuAs.hex(ours, 0, ours.length) + " | as " + GnuAs.hex(want, 0, SLOT));
            }
        }
        return bad;
    }
}
