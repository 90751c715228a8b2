package dev.faultline.guest.asm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Thousands of random instructions from the supported subset, random operands (all registers,
 * every addressing-mode shape, immediates at the encoding boundaries), assembled by GNU as in
 * one batch and compared byte for byte.
 */
class AssemblerRandomizedTest {
    private static final long SEED = 0x5eed_fa17L;
    private static final int COUNT = 4000;
    private static final String[] ALU = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
    private static final String[] UNARY = {"inc", "dec", "not", "neg", "mul", "imul", "div", "idiv"};
    private static final String[] SHIFT = {"rol", "ror", "shl", "shr", "sar"};
    private static final long[] DISPS = {0, 1, -1, 8, 127, 128, -128, -129, 0x1000, -0x1000, 0x7fffffff, Integer.MIN_VALUE};

    private final Random rnd = new Random(SEED);

    @Test
    void shouldEncodeThousandsOfRandomInstructionsLikeGnuAs() throws Exception {
        assumeTrue(GnuAs.unavailableReason().isEmpty(), () -> "skipped: " + GnuAs.unavailableReason().orElse(""));
        List<AsmCase> cases = new ArrayList<>();
        List<Supplier<AsmCase>> gens = generators();
        for (int i = 0; i < COUNT; i++) cases.add(gens.get(rnd.nextInt(gens.size())).get());
        List<String> bad = AsmCase.mismatches(cases);
        assertEquals(List.of(), bad.stream().limit(20).toList(),
                bad.size() + " of " + cases.size() + " random encodings differ from GNU as (seed " + SEED + ")");
    }

    private List<Supplier<AsmCase>> generators() {
        List<Supplier<AsmCase>> g = new ArrayList<>();
        g.add(() -> { int s = size(); Reg d = reg(s), r = reg(s); return new AsmCase("mov " + d + ", " + r, a -> a.mov(d, r)); });
        g.add(() -> { int s = size(); Reg d = reg(s); Mem m = mem(s); return new AsmCase("mov " + d + ", " + m, a -> a.mov(d, m)); });
        g.add(() -> { int s = size(); Reg r = reg(s); Mem m = mem(s); return new AsmCase("mov " + m + ", " + r, a -> a.mov(m, r)); });
        g.add(() -> { int s = size(); Reg d = reg(s); long v = s == 64 ? rnd.nextLong() >> rnd.nextInt(64) : imm(s);
            return new AsmCase((s == 64 && v != (int) v ? "movabs " : "mov ") + d + ", " + v, a -> a.mov(d, v)); });
        g.add(() -> { int s = size(); Mem m = mem(s); long v = imm(s); return new AsmCase("mov " + m + ", " + v, a -> a.mov(m, v)); });
        g.add(() -> { String op = pick(ALU); int s = size(); Reg d = reg(s), r = reg(s);
            return new AsmCase(op + " " + d + ", " + r, a -> alu(a, op, d, r)); });
        g.add(() -> { String op = pick(ALU); int s = size(); Reg d = reg(s); Mem m = mem(s);
            return new AsmCase(op + " " + d + ", " + m, a -> alu(a, op, d, m)); });
        g.add(() -> { String op = pick(ALU); int s = size(); Reg r = reg(s); Mem m = mem(s);
            return new AsmCase(op + " " + m + ", " + r, a -> alu(a, op, m, r)); });
        g.add(() -> { String op = pick(ALU); int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s); long v = imm(s);
            return new AsmCase(op + " " + d + ", " + v, a -> aluImm(a, op, d, v)); });
        g.add(() -> { int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s); Reg r = reg(s);
            return new AsmCase("test " + d + ", " + r, a -> a.test(d, r)); });
        g.add(() -> { int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s); long v = imm(s);
            return new AsmCase("test " + d + ", " + v, a -> a.test(d, v)); });
        g.add(() -> { String op = pick(UNARY); int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s);
            return new AsmCase(op + " " + d, a -> unary(a, op, d)); });
        g.add(() -> { String op = pick(SHIFT); int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s); int n = rnd.nextInt(s);
            return new AsmCase(op + " " + d + ", " + n, a -> shift(a, op, d, n)); });
        g.add(() -> { String op = pick(SHIFT); int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s);
            return new AsmCase(op + " " + d + ", cl", a -> shiftCl(a, op, d)); });
        g.add(() -> { int s = 16 << rnd.nextInt(3); Reg d = reg(s); Operand src = rnd.nextBoolean() ? reg(s) : mem(s);
            return new AsmCase("imul " + d + ", " + src, a -> a.imul(d, src)); });
        g.add(() -> { int s = 16 << rnd.nextInt(3); Reg d = reg(s); Operand src = rnd.nextBoolean() ? reg(s) : mem(s);
            long v = s == 16 ? rnd.nextInt(-0x8000, 0x8000) : rnd.nextInt() >> rnd.nextInt(32);
            return new AsmCase("imul " + d + ", " + src + ", " + v, a -> a.imul(d, src, v)); });
        g.add(() -> { int from = rnd.nextBoolean() ? 8 : 16; int to = from == 8 ? 16 << rnd.nextInt(3) : 32 << rnd.nextInt(2);
            Reg d = reg(to); Operand src = rnd.nextBoolean() ? reg(from) : mem(from); boolean zx = rnd.nextBoolean();
            return new AsmCase((zx ? "movzx " : "movsx ") + d + ", " + src, a -> { if (zx) a.movzx(d, src); else a.movsx(d, src); }); });
        g.add(() -> { Reg d = reg(64); Operand src = rnd.nextBoolean() ? reg(32) : mem(32);
            return new AsmCase("movsxd " + d + ", " + src, a -> a.movsxd(d, src)); });
        g.add(() -> { int s = 16 << rnd.nextInt(3); Reg d = reg(s); Mem m = mem(0);
            return new AsmCase("lea " + d + ", " + m, a -> a.lea(d, m)); });
        g.add(() -> { int s = size(); Operand d = rnd.nextBoolean() ? reg(s) : mem(s); Reg r = reg(s);
            return new AsmCase("xchg " + d + ", " + r, a -> a.xchg(d, r)); });
        g.add(() -> { int s = size(); Mem m = mem(s); Reg r = reg(s); boolean x = rnd.nextBoolean();
            return new AsmCase("lock " + (x ? "xadd " : "cmpxchg ") + m + ", " + r,
                    a -> { a.lock(); if (x) a.xadd(m, r); else a.cmpxchg(m, r); }); });
        g.add(() -> { Operand o = rnd.nextBoolean() ? reg(64) : mem(64); boolean push = rnd.nextBoolean();
            return new AsmCase((push ? "push " : "pop ") + o, a -> { if (push) a.push(o); else a.pop(o); }); });
        g.add(() -> { long v = rnd.nextInt() >> rnd.nextInt(32); return new AsmCase("push " + v, a -> a.push(v)); });
        g.add(() -> { Cond cc = pick(Cond.values()); Operand d = rnd.nextBoolean() ? reg(8) : mem(8);
            return new AsmCase("set" + cc.suffix() + " " + d, a -> a.set(cc, d)); });
        g.add(() -> { Cond cc = pick(Cond.values()); int s = 16 << rnd.nextInt(3); Reg d = reg(s); Operand src = rnd.nextBoolean() ? reg(s) : mem(s);
            return new AsmCase("cmov" + cc.suffix() + " " + d + ", " + src, a -> a.cmov(cc, d, src)); });
        g.add(() -> { Operand o = rnd.nextBoolean() ? reg(64) : mem(64); boolean jmp = rnd.nextBoolean();
            return new AsmCase((jmp ? "jmp " : "call ") + o, a -> { if (jmp) a.jmp(o); else a.call(o); }); });
        return g;
    }

    private static void alu(Assembler a, String op, Operand d, Operand s) {
        switch (op) {
            case "add" -> a.add(d, s); case "or" -> a.or(d, s); case "adc" -> a.adc(d, s); case "sbb" -> a.sbb(d, s);
            case "and" -> a.and(d, s); case "sub" -> a.sub(d, s); case "xor" -> a.xor(d, s); case "cmp" -> a.cmp(d, s);
            default -> throw new AssertionError(op);
        }
    }

    private static void aluImm(Assembler a, String op, Operand d, long v) {
        switch (op) {
            case "add" -> a.add(d, v); case "or" -> a.or(d, v); case "adc" -> a.adc(d, v); case "sbb" -> a.sbb(d, v);
            case "and" -> a.and(d, v); case "sub" -> a.sub(d, v); case "xor" -> a.xor(d, v); case "cmp" -> a.cmp(d, v);
            default -> throw new AssertionError(op);
        }
    }

    private static void unary(Assembler a, String op, Operand d) {
        switch (op) {
            case "inc" -> a.inc(d); case "dec" -> a.dec(d); case "not" -> a.not(d); case "neg" -> a.neg(d);
            case "mul" -> a.mul(d); case "imul" -> a.imul(d); case "div" -> a.div(d); case "idiv" -> a.idiv(d);
            default -> throw new AssertionError(op);
        }
    }

    private static void shift(Assembler a, String op, Operand d, int n) {
        switch (op) {
            case "rol" -> a.rol(d, n); case "ror" -> a.ror(d, n); case "shl" -> a.shl(d, n);
            case "shr" -> a.shr(d, n); case "sar" -> a.sar(d, n);
            default -> throw new AssertionError(op);
        }
    }

    private static void shiftCl(Assembler a, String op, Operand d) {
        switch (op) {
            case "rol" -> a.rol(d, Reg.CL); case "ror" -> a.ror(d, Reg.CL); case "shl" -> a.shl(d, Reg.CL);
            case "shr" -> a.shr(d, Reg.CL); case "sar" -> a.sar(d, Reg.CL);
            default -> throw new AssertionError(op);
        }
    }

    private int size() { return 8 << rnd.nextInt(4); }

    private Reg reg(int bits) { return Reg.of(rnd.nextInt(16), bits); }

    private <T> T pick(T[] values) { return values[rnd.nextInt(values.length)]; }

    /** An immediate valid for an operand of {@code bits}, often at an encoding boundary. */
    private long imm(int bits) {
        long[] edges = {0, 1, -1, 127, 128, -128, -129, 255, 0x7fff, -0x8000, 0xffff, Integer.MAX_VALUE, Integer.MIN_VALUE, 0xffffffffL};
        long v = rnd.nextInt(3) == 0 ? rnd.nextLong() : edges[rnd.nextInt(edges.length)];
        return switch (bits) {
            case 8 -> (byte) v;
            case 16 -> (short) v;
            case 32 -> (int) v;
            default -> (int) v;
        };
    }

    private Mem mem(int bits) {
        int shape = rnd.nextInt(10);
        long disp = rnd.nextInt(4) == 0 ? rnd.nextInt() : DISPS[rnd.nextInt(DISPS.length)];
        if (shape == 0) return Mem.rip(bits, (int) disp);
        Reg base = shape == 1 ? null : reg(64);
        Reg index = shape <= 5 ? null : Reg.of(pickIndex(), 64);
        if (base == null && index == null) return Mem.abs(bits, disp);
        return new Mem(bits, base, index, 1 << rnd.nextInt(4), disp, false, null);
    }

    private int pickIndex() {
        int i;
        do i = rnd.nextInt(16); while (i == 4);
        return i;
    }
}
