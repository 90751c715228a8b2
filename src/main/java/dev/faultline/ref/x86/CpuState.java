package dev.faultline.ref.x86;

/**
 * Architectural state of one vCPU that the interpreter touches on every instruction: the general
 * registers, RIP and RFLAGS with lazily evaluated arithmetic flags, and the control registers.
 *
 * <h2>Lazy flags</h2>
 * Most instructions that write flags are followed by one that reads at most one or two of them (a
 * jcc after a cmp), or by one that overwrites them all. So an arithmetic instruction records what it
 * did ({@link #fop}: the operation, {@link #fsize}, both operands and the result, zero-extended to the
 * operand size) and each flag is derived from that record only when it is read. Instructions whose
 * flag rules are irregular (shifts, multiplies, bit scans, ...) compute every flag at once and store
 * them in {@link #eflags} with {@code fop = F_NONE}.
 *
 * <p>{@link #eflags} always holds the non-arithmetic bits (IF, DF, bit 1...); when {@code fop} is
 * {@link #F_NONE} it also holds the six arithmetic flags. Threading: owned by the vCPU's thread.
 */
public abstract class CpuState {
    public static final long CF = 1, PF = 1 << 2, AF = 1 << 4, ZF = 1 << 6, SF = 1 << 7, TF = 1 << 8, IF = 1 << 9,
            DF = 1 << 10, OF = 1 << 11, AC = 1L << 18, ID = 1L << 21;
    public static final long ARITH = CF | PF | AF | ZF | SF | OF;
    /** The RFLAGS bits a guest may change (POPF at CPL 0 in 64-bit mode, no VM86/VIF/VIP/RF/NT). */
    public static final long WRITABLE = ARITH | TF | IF | DF | AC | ID | (3L << 12) | (1L << 14);

    /** Index of the always-zero pseudo register used for an absent base or index. */
    public static final int NONE = 16;

    /** Lazy-flag operations. */
    public static final int F_NONE = 0, F_ADD = 1, F_ADC = 2, F_SUB = 3, F_SBB = 4, F_LOGIC = 5, F_INC = 6, F_DEC = 7;

    /** General registers in x86 encoding order, plus {@link #NONE} (always 0). */
    public final long[] r = new long[17];
    public long rip;
    /** Non-arithmetic RFLAGS bits, and all of them while {@code fop == F_NONE}. */
    public long eflags = 2;
    public int fop = F_NONE;
    public int fsize = 8;
    public long fa, fb, fres;
    /** INC/DEC: the carry flag they leave unchanged. ADC/SBB: the carry in. */
    public long fcarry;

    public long cr0, cr2, cr3, cr4, cr8, efer;
    public long fsBase, gsBase, kernelGsBase;
    public long gdtBase, idtBase;
    public int gdtLimit, idtLimit;

    // ---------------------------------------------------------------- size helpers

    public static long mask(int size) { return size == 8 ? -1L : (1L << (size << 3)) - 1; }

    public static long signBit(int size) { return 1L << ((size << 3) - 1); }

    /** Sign-extends the low {@code size} bytes of {@code v}. */
    public static long sext(long v, int size) {
        return switch (size) {
            case 1 -> (byte) v;
            case 2 -> (short) v;
            case 4 -> (int) v;
            default -> v;
        };
    }

    // ---------------------------------------------------------------- registers by size

    /** Register {@code reg} read at {@code size} bytes, zero-extended. Byte registers 20..23 are AH..BH. */
    public final long getReg(int size, int reg) {
        long[] r = this.r;
        return switch (size) {
            case 8 -> r[reg];
            case 4 -> r[reg] & 0xffffffffL;
            case 2 -> r[reg] & 0xffff;
            default -> reg < 20 ? r[reg] & 0xff : (r[reg - 20] >>> 8) & 0xff;
        };
    }

    /** Writes a register at {@code size} bytes: 32-bit writes zero-extend, 8/16-bit writes merge. */
    public final void setReg(int size, int reg, long v) {
        long[] r = this.r;
        switch (size) {
            case 8 -> r[reg] = v;
            case 4 -> r[reg] = v & 0xffffffffL;
            case 2 -> r[reg] = (r[reg] & ~0xffffL) | (v & 0xffff);
            default -> {
                if (reg < 20) r[reg] = (r[reg] & ~0xffL) | (v & 0xff);
                else r[reg - 20] = (r[reg - 20] & ~0xff00L) | ((v & 0xff) << 8);
            }
        }
    }

    // ---------------------------------------------------------------- lazy flags

    /** Records an arithmetic result; operands and result must be zero-extended to {@code size}. */
    protected final void setLazy(int op, int size, long a, long b, long res) {
        fop = op; fsize = size; fa = a; fb = b; fres = res;
    }

    public final boolean cf() {
        return switch (fop) {
            case F_NONE -> (eflags & CF) != 0;
            case F_ADD -> Long.compareUnsigned(fres, fa) < 0;
            case F_ADC -> fcarry != 0 ? Long.compareUnsigned(fres, fa) <= 0 : Long.compareUnsigned(fres, fa) < 0;
            case F_SUB -> Long.compareUnsigned(fa, fb) < 0;
            case F_SBB -> fcarry != 0 ? Long.compareUnsigned(fa, fb) <= 0 : Long.compareUnsigned(fa, fb) < 0;
            case F_LOGIC -> false;
            default -> fcarry != 0;  // INC, DEC
        };
    }

    public final boolean zf() { return fop == F_NONE ? (eflags & ZF) != 0 : fres == 0; }

    public final boolean sf() { return fop == F_NONE ? (eflags & SF) != 0 : (fres & signBit(fsize)) != 0; }

    public final boolean pf() { return fop == F_NONE ? (eflags & PF) != 0 : parity(fres); }

    public final boolean af() {
        return switch (fop) {
            case F_NONE -> (eflags & AF) != 0;
            case F_LOGIC -> false;
            default -> ((fa ^ fb ^ fres) & 0x10) != 0;
        };
    }

    public final boolean of() {
        long sign = signBit(fsize);
        return switch (fop) {
            case F_NONE -> (eflags & OF) != 0;
            case F_ADD, F_ADC -> ((fa ^ fres) & (fb ^ fres) & sign) != 0;
            case F_SUB, F_SBB -> ((fa ^ fb) & (fa ^ fres) & sign) != 0;
            case F_INC -> fres == sign;
            case F_DEC -> fres == sign - 1;
            default -> false;  // LOGIC
        };
    }

    /** PF: set when the low byte of the result has an even number of one bits. */
    public static boolean parity(long v) { return (Integer.bitCount((int) v & 0xff) & 1) == 0; }

    /** The complete RFLAGS value (evaluates pending lazy flags). */
    public final long rflags() {
        if (fop == F_NONE) return eflags | 2;
        long f = eflags & ~ARITH;
        if (cf()) f |= CF;
        if (pf()) f |= PF;
        if (af()) f |= AF;
        if (zf()) f |= ZF;
        if (sf()) f |= SF;
        if (of()) f |= OF;
        return f | 2;
    }

    /** Replaces RFLAGS (bit 1 forced on, reserved bits off). */
    public final void setRflags(long v) {
        eflags = (v & (WRITABLE | (1L << 16) | (1L << 17) | (1L << 19) | (1L << 20))) | 2;
        fop = F_NONE;
    }

    /** Materialises the lazy flags into {@link #eflags} so that single bits can be changed. */
    protected final void materialiseFlags() {
        if (fop != F_NONE) {
            eflags = rflags();
            fop = F_NONE;
        }
    }

    /** Condition code {@code cc} (the low nibble of jcc/setcc/cmovcc). */
    public final boolean cond(int cc) {
        if (fop == F_SUB) {  // after cmp/sub: compare the operands directly
            long a = fa, b = fb;
            switch (cc) {
                case 0x2: return Long.compareUnsigned(a, b) < 0;
                case 0x3: return Long.compareUnsigned(a, b) >= 0;
                case 0x4: return a == b;
                case 0x5: return a != b;
                case 0x6: return Long.compareUnsigned(a, b) <= 0;
                case 0x7: return Long.compareUnsigned(a, b) > 0;
                case 0xc: return sext(a, fsize) < sext(b, fsize);
                case 0xd: return sext(a, fsize) >= sext(b, fsize);
                case 0xe: return sext(a, fsize) <= sext(b, fsize);
                case 0xf: return sext(a, fsize) > sext(b, fsize);
                default: break;
            }
        }
        boolean v;
        switch (cc >> 1) {
            case 0 -> v = of();
            case 1 -> v = cf();
            case 2 -> v = zf();
            case 3 -> v = cf() || zf();
            case 4 -> v = sf();
            case 5 -> v = pf();
            case 6 -> v = sf() != of();
            default -> v = zf() || sf() != of();
        }
        return v ^ ((cc & 1) != 0);
    }
}
