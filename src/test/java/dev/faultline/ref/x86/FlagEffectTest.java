package dev.faultline.ref.x86;

import static dev.faultline.ref.x86.CpuState.AF;
import static dev.faultline.ref.x86.CpuState.CF;
import static dev.faultline.ref.x86.CpuState.OF;
import static dev.faultline.ref.x86.CpuState.PF;
import static dev.faultline.ref.x86.CpuState.SF;
import static dev.faultline.ref.x86.CpuState.ZF;
import static dev.faultline.ref.x86.FlagEffect.STATUS;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Cond;
import dev.faultline.guest.asm.Mem;
import dev.faultline.guest.asm.Reg;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

class FlagEffectTest {

    /** The one instruction {@code emit} assembles, decoded by the interpreter's decoder. */
    private static Insn decode(Consumer<Assembler> emit) {
        Assembler a = new Assembler(0x1000);
        emit.accept(a);
        byte[] code = a.assemble();
        Insn in = new Insn();
        assertEquals(Decoder.OK, new Decoder().decode(code, code.length, in));
        assertEquals(code.length, in.len, "exactly one instruction");
        return in;
    }

    private static long undefinedAfter(FlagEffect e) { return STATUS & ~e.after(STATUS); }

    @Test
    void shouldLeaveSignZeroAdjustAndParityUndefinedAfterEveryMultiply() {
        for (FlagEffect e : new FlagEffect[] {FlagEffect.of(decode(a -> a.mul(Reg.RBX)), 0), FlagEffect.of(decode(a -> a.imul(Reg.ECX)), 0),
                FlagEffect.of(decode(a -> a.imul(Reg.R9, Reg.R10)), 0), FlagEffect.of(decode(a -> a.imul(Reg.AX, Reg.BX, 300)), 0)}) {
            assertEquals(SF | ZF | AF | PF, e.undefined(), e.toString());
            assertEquals(CF | OF, e.defined(), e.toString());
            assertEquals(0, e.reads());
        }
    }

    @Test
    void shouldLeaveAllSixUndefinedAfterDivAndIdiv() {
        assertEquals(STATUS, undefinedAfter(FlagEffect.of(decode(a -> a.div(Reg.R14)), 0)));
        assertEquals(STATUS, undefinedAfter(FlagEffect.of(decode(a -> a.idiv(Reg.ECX)), 0)));
        assertEquals("CF PF AF ZF SF OF", FlagEffect.names(FlagEffect.divide().undefined()));
    }

    @Test
    void shouldLeaveOnlyZeroDefinedAfterBitScans() {
        Insn bsf = decode(a -> a.db(0x48, 0x0f, 0xbc, 0xc3));  // bsf rax, rbx
        Insn bsr = decode(a -> a.db(0x48, 0x0f, 0xbd, 0xc3));  // bsr rax, rbx
        for (Insn in : new Insn[] {bsf, bsr}) {
            FlagEffect e = FlagEffect.of(in, 0);
            assertEquals(ZF, e.defined());
            assertEquals(CF | OF | SF | AF | PF, e.undefined());
            assertTrue(FlagEffect.destinationUndefined(in, 0, 0), "a zero source leaves the destination undefined");
            assertFalse(FlagEffect.destinationUndefined(in, 0, 0x100));
        }
        assertEquals(OF | SF | AF | PF, FlagEffect.bitScan(Op.TZCNT).undefined());
        assertEquals(0, FlagEffect.bitScan(Op.POPCNT).undefined());
    }

    @Test
    void shouldLeaveAdjustUndefinedAfterLogicAndDefineEverythingAfterArithmetic() {
        assertEquals(AF, FlagEffect.of(decode(a -> a.and(Reg.EAX, Reg.EBX)), 0).undefined());
        assertEquals(AF, FlagEffect.of(decode(a -> a.test(Reg.RAX, Reg.RBX)), 0).undefined());
        assertEquals(AF, FlagEffect.of(decode(a -> a.xor(Mem.m8(Reg.R15, 8), 3)), 0).undefined());
        FlagEffect cmp = FlagEffect.of(decode(a -> a.cmp(Reg.R9D, Reg.EBP)), 0);
        assertEquals(STATUS, cmp.defined());
        assertEquals(0, cmp.reads());
        assertEquals(CF, FlagEffect.of(decode(a -> a.adc(Reg.RAX, Reg.RBX)), 0).reads());
        assertEquals(CF, FlagEffect.of(decode(a -> a.sbb(Reg.AL, 5)), 0).reads());
        FlagEffect dec = FlagEffect.of(decode(a -> a.dec(Reg.ECX)), 0);
        assertEquals(STATUS & ~CF, dec.defined(), "dec leaves CF as it was");
        assertEquals(CF, STATUS & ~dec.after(STATUS & ~CF), "an undefined CF stays undefined across dec");
        assertEquals(FlagEffect.NONE, FlagEffect.of(decode(a -> a.not(Reg.RAX)), 0));
    }

    @Test
    void shouldTouchNoFlagOnAShiftOrRotateWhoseMaskedCountIsZero() {
        Insn shlCl = decode(a -> a.shl(Reg.R13, Reg.CL));
        assertEquals(FlagEffect.NONE, FlagEffect.of(shlCl, 0));
        assertEquals(FlagEffect.NONE, FlagEffect.of(shlCl, 64), "64-bit counts are masked to 6 bits");
        Insn shl32 = decode(a -> a.shl(Reg.EAX, Reg.CL));
        assertEquals(FlagEffect.NONE, FlagEffect.of(shl32, 32), "32-bit counts are masked to 5 bits");
        assertEquals(FlagEffect.NONE, FlagEffect.of(decode(a -> a.rol(Reg.EBX, Reg.CL)), 0x20));
        assertEquals(FlagEffect.NONE, FlagEffect.shift(Op.SH_RCL, 1, 0));
    }

    @Test
    void shouldDefineOverflowOnlyForACountOfOneAndLeaveAdjustUndefinedAfterShifts() {
        Insn shl = decode(a -> a.shl(Reg.R13, Reg.CL));
        assertEquals(AF, FlagEffect.of(shl, 1).undefined());
        assertEquals(AF | OF, FlagEffect.of(shl, 2).undefined());
        assertEquals(AF | OF, FlagEffect.of(shl, 63).undefined());
        assertEquals(AF, FlagEffect.of(decode(a -> a.shl(Reg.EAX, Reg.CL)), 33).undefined(), "33 masks to 1");
        assertEquals(AF | OF, FlagEffect.of(decode(a -> a.sar(Reg.RAX, 5)), 0).undefined());
        assertEquals(AF, FlagEffect.of(decode(a -> a.shr(Reg.RAX, 1)), 0).undefined());
        assertEquals(STATUS & ~AF, FlagEffect.of(decode(a -> a.shr(Reg.RAX, 1)), 0).defined());
    }

    @Test
    void shouldLeaveCarryUndefinedWhenAByteOrWordShlOrShrShiftsByItsWidthOrMore() {
        assertEquals(AF | OF, FlagEffect.of(decode(a -> a.shl(Reg.AL, 7)), 0).undefined());
        assertEquals(AF | OF | CF, FlagEffect.of(decode(a -> a.shl(Reg.AL, 8)), 0).undefined());
        assertEquals(AF | OF | CF, FlagEffect.of(decode(a -> a.shr(Reg.AX, Reg.CL)), 16).undefined());
        assertEquals(AF | OF, FlagEffect.of(decode(a -> a.shr(Reg.AX, Reg.CL)), 15).undefined());
        assertEquals(AF | OF, FlagEffect.of(decode(a -> a.sar(Reg.AL, 20)), 0).undefined(), "SAR shifts out copies of the sign");
        assertEquals(AF | OF, FlagEffect.of(decode(a -> a.shl(Reg.EAX, 31)), 0).undefined(), "no 32-bit count reaches the width");
    }

    @Test
    void shouldLeaveOnlyOverflowUndefinedAfterRotatesByMoreThanOne() {
        Insn rol = decode(a -> a.rol(Reg.EBX, 5));
        FlagEffect e = FlagEffect.of(rol, 0);
        assertEquals(OF, e.undefined());
        assertEquals(CF, e.defined());
        assertEquals(SF | ZF | AF | PF, STATUS & ~(e.defined() | e.undefined()), "rotates leave SF ZF AF PF alone");
        assertEquals(0, FlagEffect.of(decode(a -> a.ror(Reg.EBX, 1)), 0).undefined());
        assertEquals(CF | OF, FlagEffect.of(decode(a -> a.ror(Reg.EBX, 1)), 0).defined());
        assertEquals(OF, FlagEffect.of(decode(a -> a.rol(Reg.AL, Reg.CL)), 8).undefined(), "a byte rotated by 8: CF defined, OF not");
        assertEquals(CF, FlagEffect.shift(Op.SH_RCR, 4, 3).reads(), "RCL and RCR read CF");
        assertEquals(OF, FlagEffect.shift(Op.SH_RCR, 4, 3).undefined());
    }

    @Test
    void shouldLeaveEverythingUndefinedForAWordShldByMoreThanSixteen() {
        Insn shld = decode(a -> a.db(0x66, 0x0f, 0xa5, 0xd8));  // shld ax, bx, cl
        assertEquals(STATUS, FlagEffect.of(shld, 17).undefined());
        assertTrue(FlagEffect.destinationUndefined(shld, 17, 0));
        assertEquals(AF | OF, FlagEffect.of(shld, 16).undefined());
        assertFalse(FlagEffect.destinationUndefined(shld, 16, 0));
        assertEquals(AF, FlagEffect.of(shld, 1).undefined());
        assertEquals(FlagEffect.NONE, FlagEffect.of(shld, 32));
    }

    @Test
    void shouldReadTheFlagsOfEachCondition() {
        assertEquals(ZF, FlagEffect.of(decode(a -> a.cmov(Cond.E, Reg.R14D, Reg.EBP)), 0).reads());
        assertEquals(CF, FlagEffect.of(decode(a -> a.set(Cond.AE, Mem.m8(Reg.R15, 12))), 0).reads());
        assertEquals(ZF, FlagEffect.of(decode(a -> a.set(Cond.E, Reg.AL)), 0).reads());
        assertEquals(OF, FlagEffect.condition(Cond.O.code()));
        assertEquals(CF | ZF, FlagEffect.condition(Cond.A.code()));
        assertEquals(PF, FlagEffect.condition(Cond.NP.code()));
        assertEquals(SF | OF, FlagEffect.condition(Cond.GE.code()));
        assertEquals(ZF | SF | OF, FlagEffect.condition(Cond.LE.code()));
        assertEquals(STATUS, FlagEffect.of(decode(a -> a.db(0x9c)), 0).reads(), "pushf");
        assertEquals(STATUS & ~OF, FlagEffect.of(decode(a -> a.db(0x9f)), 0).reads(), "lahf");
        assertEquals(STATUS & ~OF, FlagEffect.of(decode(a -> a.db(0x9e)), 0).defined(), "sahf");
        assertEquals(STATUS, FlagEffect.of(decode(a -> a.db(0x9d)), 0).defined(), "popf");
    }

    @Test
    void shouldCombineEveryCountOfAShiftByClConservatively() {
        // shl r13, cl then jo: with CL unknown, OF may be undefined (count > 1) or unchanged (count 0).
        FlagEffect any = FlagEffect.ofAnyCount(decode(a -> a.shl(Reg.R13, Reg.CL)));
        assertEquals(OF | AF, any.undefined());
        assertEquals(0, any.defined(), "count 0 leaves every flag as it was");
        assertEquals(STATUS & ~(OF | AF), any.after(STATUS));
        assertEquals(0, any.after(0));
        FlagEffect anyByte = FlagEffect.ofAnyCount(decode(a -> a.shr(Reg.BL, Reg.CL)));
        assertEquals(OF | AF | CF, anyByte.undefined(), "a byte may be shifted by 8 or more");
        FlagEffect imm = FlagEffect.ofAnyCount(decode(a -> a.shl(Reg.R13, 1)));
        assertEquals(AF, imm.undefined(), "an immediate count is known");
    }

    @Test
    void shouldMakeOrExactlyTheMeetOfBothOutcomes() {
        SplittableRandom rnd = new SplittableRandom(5);
        for (int k = 0; k < 2000; k++) {
            FlagEffect a = random(rnd), b = random(rnd);
            for (long d = 0; d < 1 << 12; d++) {
                if ((d & ~STATUS) != 0) continue;
                assertEquals(a.after(d) & b.after(d), a.or(b).after(d), () -> a + " or " + b);
            }
        }
    }

    @Test
    void shouldRefuseAFlagThatIsBothDefinedAndUndefined() {
        assertThrows(IllegalArgumentException.class, () -> new FlagEffect(0, CF, CF));
        assertThrows(IllegalArgumentException.class, () -> new FlagEffect(1L << 9, 0, 0));
    }

    private static FlagEffect random(SplittableRandom rnd) {
        long defined = rnd.nextLong() & STATUS;
        long undefined = rnd.nextLong() & STATUS & ~defined;
        return new FlagEffect(rnd.nextLong() & STATUS, defined, undefined);
    }
}
