package dev.faultline.conform;

import static dev.faultline.ref.x86.CpuState.AF;
import static dev.faultline.ref.x86.CpuState.CF;
import static dev.faultline.ref.x86.CpuState.OF;
import static dev.faultline.ref.x86.Op.SUB_ADC;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.guest.asm.Cond;
import dev.faultline.guest.asm.Label;
import dev.faultline.guest.asm.Reg;
import dev.faultline.ref.x86.Decoder;
import dev.faultline.ref.x86.FlagEffect;
import dev.faultline.ref.x86.Insn;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/** Generated programs never read a status flag that may be undefined, as an independent check of the machine code sees it. */
class ProgramFlagsTest {

    @Test
    void shouldNeverReadAPossiblyUndefinedFlagInAnyGeneratedProgram() {
        int programs = 0;
        for (long seed = 1; seed <= 40; seed++) {
            for (int index = 0; index < 15; index++) {
                int steps = index % 5 == 0 ? 150 : 40;
                Program p = new ProgramGenerator(seed, index).generate(steps);
                FlagReadChecker.Result r = FlagReadChecker.check(p.image());
                long s = seed;
                int i = index;
                assertEquals(List.of(), r.violations(), () -> "program " + i + " of seed " + s + ":\n" + String.join("\n", p.listing()));
                assertEquals(FlagEffect.names(r.definedAtEnd()), FlagEffect.names(p.definedFlagsAtEnd()),
                        () -> "flags defined at the end of program " + i + " of seed " + s + " (checker vs generator)");
                programs++;
            }
        }
        assertEquals(600, programs);
    }

    @Test
    void shouldStillExerciseEveryInstructionKindAndReadFlagsAfterInstructionsThatUndefineThem() {
        Map<String, Integer> seen = new TreeMap<>();
        int definers = 0;
        for (long seed = 1; seed <= 10; seed++) {
            for (int index = 0; index < 20; index++) {
                Program p = new ProgramGenerator(seed, index).generate(40);
                for (Insn in : decode(p)) seen.merge(kind(in), 1, Integer::sum);
                for (String line : p.listing()) if (line.matches("(cmp|test|add|sub|and|or|xor|neg|inc|dec) [^;]*; .*")) definers++;
            }
        }
        for (String kind : List.of("div", "mul", "imul2", "imul3", "shift/cl", "shift/imm", "rotate/imm>1", "bsf", "bsr", "setcc", "cmovcc",
                "jcc", "adc/sbb", "xadd", "cmpxchg", "string", "in", "out", "call", "ret")) {
            assertTrue(seen.getOrDefault(kind, 0) > 10, () -> kind + " appears in too few programs: " + seen);
        }
        assertTrue(definers > 100, "flag readers get a defining instruction first where they need it: " + definers);
    }

    @Test
    void shouldFindAReadOfAFlagThatADivisionLeftUndefined() {
        // div r14 then cmove r14d, ebp: ZF is undefined after div. The step's own description lies (reads nothing).
        Program p = program(
                new Op("div r14", a -> a.or(Reg.R14, 1).xor(Reg.EDX, Reg.EDX).div(Reg.R14), d -> d),
                new Op("cmove r14d, ebp", a -> a.cmov(Cond.E, Reg.R14D, Reg.EBP), d -> d));
        FlagReadChecker.Result r = FlagReadChecker.check(p.image());
        assertEquals(1, r.violations().size(), r.violations().toString());
        assertTrue(r.violations().get(0).endsWith("(44 0f 44 f5) reads ZF, which may be undefined there"), r.violations().get(0));
    }

    @Test
    void shouldFindAReadOfAFlagUndefinedOnlyOnTheLoopsBackEdge() {
        // First iteration: CF is defined on entry. Second: div left CF undefined, and dec keeps it so.
        Program p = program(new Op("loop x2 [adc eax, ebx; div r9]", a -> {
            Label top = a.newLabel();
            a.push(Reg.RCX).mov(Reg.ECX, 2).bind(top);
            a.adc(Reg.EAX, Reg.EBX).or(Reg.R9, 1).xor(Reg.EDX, Reg.EDX).div(Reg.R9);
            a.dec(Reg.ECX).jnz(top).pop(Reg.RCX);
        }, d -> d));
        FlagReadChecker.Result r = FlagReadChecker.check(p.image());
        assertEquals(1, r.violations().size(), r.violations().toString());
        assertTrue(r.violations().get(0).contains("(11 d8) reads CF"), r.violations().get(0));
    }

    @Test
    void shouldFindAReadOfAFlagUndefinedOnOneSideOfABranch() {
        Program p = program(new Op("jz over [div]; sete al", a -> {
            Label skip = a.newLabel();
            a.jz(skip).or(Reg.R9, 1).xor(Reg.EDX, Reg.EDX).div(Reg.R9).bind(skip);
            a.set(Cond.E, Reg.AL);
        }, d -> d));
        FlagReadChecker.Result r = FlagReadChecker.check(p.image());
        assertEquals(1, r.violations().size(), r.violations().toString());
        assertTrue(r.violations().get(0).contains("reads ZF"), r.violations().get(0));
        assertEquals(0, (r.definedAtEnd() & (CF | OF | AF)), "undefined at the end: " + FlagEffect.names(~r.definedAtEnd() & FlagEffect.STATUS));
    }

    @Test
    void shouldRefuseTheSameReadsInItsOwnTracking() {
        Op div = new Op("div r14", a -> a.div(Reg.R14), FlagFlow.instructions("div r14", FlagEffect.divide()));
        Op cmove = new Op("cmove r14d, ebp", a -> a.cmov(Cond.E, Reg.R14D, Reg.EBP),
                FlagFlow.instructions("cmove r14d, ebp", FlagEffect.reading(FlagEffect.condition(Cond.E.code()))));
        FlagFlow.UndefinedFlagRead e = assertThrows(FlagFlow.UndefinedFlagRead.class, () -> program(div, cmove).definedFlagsAtEnd());
        assertEquals("`cmove r14d, ebp` reads ZF, which may be undefined there", e.getMessage());
        Op dec = new Op("dec ecx", a -> a.dec(Reg.ECX), FlagFlow.instructions("dec ecx", FlagEffect.incDec()));
        assertEquals(FlagEffect.STATUS & ~CF, program(div, dec).definedFlagsAtEnd(), "dec defines all but CF");
        Op adc = new Op("adc eax, ebx", a -> a.adc(Reg.EAX, Reg.EBX), FlagFlow.instructions("adc eax, ebx", FlagEffect.alu(SUB_ADC)));
        Op loop = new Op("loop", a -> { }, FlagFlow.loop("loop", List.of(adc, div), FlagEffect.incDec(),
                FlagEffect.reading(FlagEffect.condition(Cond.NE.code()))));
        assertThrows(FlagFlow.UndefinedFlagRead.class, () -> program(loop).definedFlagsAtEnd(), "CF is undefined on the back edge");
    }

    @Test
    void shouldListTheFlagsLeftUndefinedAtTheEnd() {
        Op div = new Op("div r14", a -> a.div(Reg.R14), FlagFlow.instructions("div r14", FlagEffect.divide()));
        Op inc = new Op("inc eax", a -> a.inc(Reg.EAX), FlagFlow.instructions("inc eax", FlagEffect.incDec()));
        List<String> listing = program(div, inc).listing();
        assertEquals("end: undefined flags CF (not compared)", listing.get(listing.size() - 1));
        List<String> clean = program(inc).listing();
        assertEquals("inc eax", clean.get(clean.size() - 1));
    }

    private static Program program(Op... ops) {
        return new Program(0, 0, new long[16], List.of(ops));
    }

    private static List<Insn> decode(Program p) {
        byte[] bytes = p.image().bytes();
        Decoder decoder = new Decoder();
        List<Insn> out = new java.util.ArrayList<>();
        for (int pos = 0; pos < bytes.length; ) {
            Insn in = new Insn();
            byte[] window = Arrays.copyOfRange(bytes, pos, Math.min(bytes.length, pos + Decoder.MAX_LEN + 1));
            decoder.decode(window, window.length, in);
            out.add(in);
            pos += in.len;
        }
        return out;
    }

    private static String kind(Insn in) {
        return switch (in.op) {
            case dev.faultline.ref.x86.Op.DIV -> "div";
            case dev.faultline.ref.x86.Op.MUL1 -> "mul";
            case dev.faultline.ref.x86.Op.IMUL2 -> "imul2";
            case dev.faultline.ref.x86.Op.IMUL3 -> "imul3";
            case dev.faultline.ref.x86.Op.SHIFT -> in.size2 == 1 ? "shift/cl"
                    : in.sub <= 1 && (in.imm & 31) > 1 ? "rotate/imm>1" : "shift/imm";
            case dev.faultline.ref.x86.Op.BSF -> "bsf";
            case dev.faultline.ref.x86.Op.BSR -> "bsr";
            case dev.faultline.ref.x86.Op.SETCC -> "setcc";
            case dev.faultline.ref.x86.Op.CMOVCC -> "cmovcc";
            case dev.faultline.ref.x86.Op.JCC -> "jcc";
            case dev.faultline.ref.x86.Op.ALU_RR, dev.faultline.ref.x86.Op.ALU_RI, dev.faultline.ref.x86.Op.ALU_RM,
                    dev.faultline.ref.x86.Op.ALU_MR, dev.faultline.ref.x86.Op.ALU_MI -> in.sub == 2 || in.sub == 3 ? "adc/sbb" : "alu";
            case dev.faultline.ref.x86.Op.XADD -> "xadd";
            case dev.faultline.ref.x86.Op.CMPXCHG -> "cmpxchg";
            case dev.faultline.ref.x86.Op.STRING -> "string";
            case dev.faultline.ref.x86.Op.IN -> "in";
            case dev.faultline.ref.x86.Op.OUT -> "out";
            case dev.faultline.ref.x86.Op.CALL -> "call";
            case dev.faultline.ref.x86.Op.RET -> "ret";
            default -> "other";
        };
    }
}
