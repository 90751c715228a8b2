package dev.faultline.conform;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Reg;
import dev.faultline.ref.x86.FlagEffect;
import java.util.ArrayList;
import java.util.List;

/**
 * A generated guest program: a prologue that gives every register a seeded value, the steps, and an
 * epilogue that saves RAX and RDX to the data area, reports done (code 0) without touching the flags,
 * and halts. The final registers, the flags defined at the end ({@link #definedFlagsAtEnd}) and RAM
 * are what the backends must agree on.
 */
record Program(long seed, int index, long[] initialRegs, List<Op> ops) {
    /** Where the data area starts; R15 holds it throughout. */
    static final long DATA_GPA = 0x300000;
    static final int DATA_SIZE = 0x10000;
    /** An address above RAM (inside the identity map) where loads and stores become MMIO exits. */
    static final long MMIO_GPA = 0xd0000000L;

    Program withOps(List<Op> subset) {
        return new Program(seed, index, initialRegs, List.copyOf(subset));
    }

    /**
     * The status flags that hold architecturally defined values when the program ends (the VMM starts
     * it with RFLAGS 0x2, all defined; prologue and epilogue touch no flag).
     * @throws FlagFlow.UndefinedFlagRead if a step reads a flag that may be undefined (never for a
     *         generated program; possible for a subset of one)
     */
    long definedFlagsAtEnd() {
        return FlagFlow.sequence(ops).after(FlagEffect.STATUS);
    }

    GuestImage image() {
        Assembler a = new Assembler(BootProtocol.DEFAULT_LOAD_GPA);
        for (int r = 0; r < 16; r++) {
            if (r == Reg.RSP.number()) continue;
            a.movabs(Reg.of(r, 64), r == Reg.R15.number() ? DATA_GPA : initialRegs[r]);
        }
        for (Op op : ops) op.emit().accept(a);
        // Keep RAX and RDX (the done port needs them) in RAM, and do not touch the flags.
        a.mov(dev.faultline.guest.asm.Mem.m64(Reg.R15, DATA_SIZE - 16), Reg.RAX);
        a.mov(dev.faultline.guest.asm.Mem.m64(Reg.R15, DATA_SIZE - 8), Reg.RDX);
        a.mov(Reg.EDX, BootProtocol.PORT_DONE);
        a.mov(Reg.EAX, 0);
        a.out(Reg.DX, Reg.EAX);
        a.hlt();
        byte[] code = a.assemble();
        return GuestImage.of(code, BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
    }

    /** The program as text: the initial registers and one line per step. */
    List<String> listing() {
        List<String> out = new ArrayList<>();
        StringBuilder init = new StringBuilder("init");
        for (int r = 0; r < 16; r++) {
            if (r == Reg.RSP.number() || r == Reg.R15.number()) continue;
            init.append(' ').append(Reg.of(r, 64).name()).append("=0x").append(Long.toHexString(initialRegs[r]));
        }
        out.add(init.toString());
        for (Op op : ops) out.add(op.text());
        try {
            long undefined = FlagEffect.STATUS & ~definedFlagsAtEnd();
            if (undefined != 0) out.add("end: undefined flags " + FlagEffect.names(undefined) + " (not compared)");
        } catch (FlagFlow.UndefinedFlagRead e) {
            out.add("end: not a valid program: " + e.getMessage());
        }
        return out;
    }
}
