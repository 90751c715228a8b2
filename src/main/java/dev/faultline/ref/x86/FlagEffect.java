package dev.faultline.ref.x86;

import static dev.faultline.ref.x86.CpuState.AF;
import static dev.faultline.ref.x86.CpuState.ARITH;
import static dev.faultline.ref.x86.CpuState.CF;
import static dev.faultline.ref.x86.CpuState.OF;
import static dev.faultline.ref.x86.CpuState.PF;
import static dev.faultline.ref.x86.CpuState.SF;
import static dev.faultline.ref.x86.CpuState.ZF;

/**
 * What one instruction does to the six status flags (CF PF AF ZF SF OF, as RFLAGS bit masks): which
 * it reads, which it leaves with an architecturally defined value, and which it leaves UNDEFINED.
 * The flags in neither set keep their value, and so their definedness.
 *
 * <p>An undefined flag holds whatever the processor happens to produce: Intel and AMD make different
 * choices, and so does KVM's instruction emulator. The interpreter models the choices of the Intel CPUs
 * it was measured on (docs/ref-backend.md); this table says where such a choice is all there is, so that
 * a differential tester compares only what the architecture defines. It follows the "Flags Affected"
 * sections of the Intel SDM Vol. 2 and the "rFLAGS Affected" tables of the AMD APM Vol. 3, and where the
 * two (or two editions of one) disagree, it takes the flag as undefined:
 *
 * <table>
 * <caption>Undefined status flags</caption>
 * <tr><th>instruction</th><th>undefined</th><th>defined</th></tr>
 * <tr><td>ADD ADC SUB SBB CMP NEG XADD CMPXCHG CMPS SCAS</td><td>none</td><td>all six (ADC, SBB read CF)</td></tr>
 * <tr><td>AND OR XOR TEST</td><td>AF</td><td>CF=OF=0, SF ZF PF</td></tr>
 * <tr><td>INC DEC</td><td>none</td><td>all but CF, which is unaffected</td></tr>
 * <tr><td>MUL, IMUL (every form)</td><td>SF ZF AF PF</td><td>CF OF</td></tr>
 * <tr><td>DIV IDIV</td><td>all six</td><td>none</td></tr>
 * <tr><td>SHL/SAL SHR SAR, masked count c (count &amp; 31, or &amp; 63 for 64-bit)</td>
 *     <td>c=0: none (no flag is touched); c&gt;0: AF; OF unless c=1; CF for SHL/SHR of an 8- or 16-bit
 *     operand when c &ge; its width</td><td>SF ZF PF; CF; OF when c=1</td></tr>
 * <tr><td>ROL ROR, masked count c</td><td>c=0: none touched; c&gt;1: OF</td>
 *     <td>CF when c&gt;0, OF when c=1; SF ZF AF PF unaffected</td></tr>
 * <tr><td>RCL RCR, masked count c</td><td>c=0: none touched; c&gt;1: OF</td>
 *     <td>CF (read and written) when c&gt;0, OF when c=1; SF ZF AF PF unaffected</td></tr>
 * <tr><td>SHLD SHRD, masked count c</td><td>c=0: none touched; AF; OF unless c=1; all six when
 *     c exceeds the operand size (16-bit operands; the result is undefined too)</td><td>CF SF ZF PF</td></tr>
 * <tr><td>BSF BSR</td><td>CF OF SF AF PF (and the destination when the source is 0)</td><td>ZF</td></tr>
 * <tr><td>TZCNT LZCNT</td><td>OF SF AF PF</td><td>CF ZF</td></tr>
 * <tr><td>POPCNT</td><td>none</td><td>ZF; the others cleared</td></tr>
 * <tr><td>BT BTS BTR BTC</td><td>OF SF AF PF, and ZF (unaffected in recent SDMs, undefined in older
 *     ones)</td><td>CF</td></tr>
 * <tr><td>Jcc SETcc CMOVcc LOOPE LOOPNE</td><td>-</td><td>read the flags of their condition</td></tr>
 * <tr><td>PUSHF LAHF</td><td>-</td><td>read all six (LAHF: all but OF)</td></tr>
 * <tr><td>POPF SAHF CLC STC</td><td>none</td><td>POPF: all six; SAHF: all but OF; CLC, STC: CF</td></tr>
 * <tr><td>CMC</td><td>-</td><td>CF keeps its definedness (its value is inverted)</td></tr>
 * </table>
 *
 * Everything else the interpreter runs (moves, loads, stores, LEA, PUSH/POP, XCHG, NOT, BSWAP, MOVS,
 * STOS, LODS, port I/O, calls and jumps) touches no status flag.
 *
 * @param reads     flags the instruction reads: if one of them is undefined, so is what it computes
 * @param defined   flags it leaves with an architecturally defined value
 * @param undefined flags it leaves undefined
 */
public record FlagEffect(long reads, long defined, long undefined) {
    /** The six status flags. */
    public static final long STATUS = ARITH;
    /** Touches no status flag. */
    public static final FlagEffect NONE = new FlagEffect(0, 0, 0);
    /** Defines all six (ADD, SUB, CMP, NEG, XADD, CMPXCHG, CMPS, SCAS, POPCNT, POPF). */
    public static final FlagEffect ALL = new FlagEffect(0, STATUS, 0);

    public FlagEffect {
        if ((defined & undefined) != 0 || ((reads | defined | undefined) & ~STATUS) != 0) {
            throw new IllegalArgumentException("not a flag effect: reads " + names(reads) + ", defined " + names(defined)
                    + ", undefined " + names(undefined));
        }
    }

    /** The flags defined after this instruction, given those defined before it (reads are not checked here). */
    public long after(long definedBefore) {
        return (definedBefore & ~(defined | undefined)) | defined;
    }

    /**
     * The effect of "this or {@code other}, which one is not known": reads what either reads, defines
     * what both define, leaves undefined what either may leave undefined. A flag one touches and the
     * other does not keeps its definedness. Exact for definedness: {@code a.or(b).after(d) ==
     * a.after(d) & b.after(d)} for every {@code d}.
     */
    public FlagEffect or(FlagEffect other) {
        return new FlagEffect(reads | other.reads, defined & other.defined, undefined | other.undefined);
    }

    // ---- the table, by operation (the constants of Op) ---------------------------------------------

    /** The eight ALU operations ({@link Op#SUB_ADD}..{@link Op#SUB_CMP}): logic ones leave AF undefined; ADC, SBB read CF. */
    public static FlagEffect alu(int sub) {
        return switch (sub) {
            case Op.SUB_OR, Op.SUB_AND, Op.SUB_XOR -> LOGIC;
            case Op.SUB_ADC, Op.SUB_SBB -> CARRY_IN;
            default -> ALL;
        };
    }

    /** TEST: as AND. */
    public static FlagEffect test() { return LOGIC; }

    /** INC, DEC: CF unaffected. */
    public static FlagEffect incDec() { return INC_DEC; }

    /** MUL and every IMUL form: CF and OF say whether the result overflowed; SF ZF AF PF undefined. */
    public static FlagEffect multiply() { return MULTIPLY; }

    /** DIV, IDIV: all six undefined. */
    public static FlagEffect divide() { return DIVIDE; }

    /**
     * A shift or rotate ({@link Op#SH_ROL}..{@link Op#SH_SAR}) of a {@code size}-byte operand by
     * {@code count} (the immediate, or CL's value; masked here to 5 bits, 6 for 64-bit operands).
     */
    public static FlagEffect shift(int kind, int size, long count) {
        int c = maskCount(size, count);
        if (c == 0) return NONE;  // "If the masked count is 0, the flags are not affected"
        long ofDefined = c == 1 ? OF : 0;
        return switch (kind) {
            case Op.SH_ROL, Op.SH_ROR -> new FlagEffect(0, CF | ofDefined, OF & ~ofDefined);
            case Op.SH_RCL, Op.SH_RCR -> new FlagEffect(CF, CF | ofDefined, OF & ~ofDefined);
            default -> {
                // SHL/SHR of an 8- or 16-bit operand by its width or more: CF undefined. SAR keeps it
                // (every bit shifted out is the sign).
                boolean cfUndefined = kind != Op.SH_SAR && c >= size * 8;
                long undefined = AF | (OF & ~ofDefined) | (cfUndefined ? CF : 0);
                yield new FlagEffect(0, STATUS & ~undefined, undefined);
            }
        };
    }

    /**
     * A shift or rotate by CL whose value is not known: the {@link #or} of {@link #shift} over every
     * count, so a flag is defined after it only if every count defines it (or, with count 0, leaves it).
     */
    public static FlagEffect shiftAnyCount(int kind, int size) {
        FlagEffect e = NONE;
        for (int c = 1; c < 64; c++) e = e.or(shift(kind, size, c));
        return e;
    }

    /** SHLD, SHRD of a {@code size}-byte operand by {@code count} (masked here). */
    public static FlagEffect shiftDouble(int size, long count) {
        int c = maskCount(size, count);
        if (c == 0) return NONE;
        if (c > size * 8) return DIVIDE;  // "If the count is greater than the operand size, the flags are undefined"
        long undefined = AF | (c == 1 ? 0 : OF);
        return new FlagEffect(0, STATUS & ~undefined, undefined);
    }

    /** BSF, BSR, TZCNT, LZCNT, POPCNT ({@link Op#BSF}..{@link Op#POPCNT}). */
    public static FlagEffect bitScan(int op) {
        return switch (op) {
            case Op.BSF, Op.BSR -> new FlagEffect(0, ZF, STATUS & ~ZF);
            case Op.TZCNT, Op.LZCNT -> new FlagEffect(0, CF | ZF, OF | SF | AF | PF);
            default -> ALL;
        };
    }

    /** BT, BTS, BTR, BTC: CF is the bit; the rest undefined (ZF too: the SDM has said both). */
    public static FlagEffect bitTest() { return BIT_TEST; }

    /** What condition code {@code cc} (0..15, as in Jcc/SETcc/CMOVcc) reads. */
    public static long condition(int cc) {
        return switch (cc >> 1) {
            case 0 -> OF;
            case 1 -> CF;
            case 2 -> ZF;
            case 3 -> CF | ZF;
            case 4 -> SF;
            case 5 -> PF;
            case 6 -> SF | OF;
            default -> ZF | SF | OF;
        };
    }

    /** Jcc, SETcc, CMOVcc: reads the flags of condition {@code cc}, writes none. */
    public static FlagEffect reading(long flags) { return new FlagEffect(flags, 0, 0); }

    // ---- the table, by decoded instruction ---------------------------------------------------------

    /**
     * The effect of decoded instruction {@code in} when RCX holds {@code rcx} (the count of shifts by
     * CL and of REP string instructions; ignored by everything else).
     */
    public static FlagEffect of(Insn in, long rcx) {
        return switch (in.op) {
            case Op.ALU_RR, Op.ALU_RI, Op.ALU_MR, Op.ALU_RM, Op.ALU_MI -> alu(in.sub);
            case Op.TEST_R, Op.TEST_I -> test();
            case Op.INC_DEC -> incDec();
            case Op.NEG, Op.XADD, Op.CMPXCHG -> ALL;
            case Op.SHIFT -> shift(in.sub, in.size, in.size2 == 1 ? rcx : in.imm);
            case Op.SHLD, Op.SHRD -> shiftDouble(in.size, in.size2 == 1 ? rcx : in.imm);
            case Op.MUL1, Op.IMUL2, Op.IMUL3 -> multiply();
            case Op.DIV -> divide();
            case Op.BSF, Op.BSR, Op.TZCNT, Op.LZCNT, Op.POPCNT -> bitScan(in.op);
            case Op.BT -> bitTest();
            case Op.JCC, Op.SETCC, Op.CMOVCC -> reading(condition(in.sub));
            case Op.LOOP -> in.sub <= 1 ? reading(ZF) : NONE;  // LOOPNE, LOOPE test ZF; LOOP, JRCXZ do not
            case Op.STRING -> string(in, rcx);
            case Op.FLAGOP -> switch (in.sub) {
                case Op.FL_CLC, Op.FL_STC -> new FlagEffect(0, CF, 0);
                default -> NONE;  // CMC inverts CF: defined stays defined, undefined stays undefined
            };
            case Op.PUSHF -> reading(STATUS);
            case Op.LAHF -> reading(STATUS & ~OF);
            case Op.POPF -> ALL;
            case Op.SAHF -> new FlagEffect(0, STATUS & ~OF, 0);
            default -> NONE;
        };
    }

    /**
     * The effect of {@code in} whatever RCX holds: for a shift by CL (or a REP string compare) the
     * {@link #or} of its effect over every count, so a flag is defined after it only if every count
     * defines it (or, with count 0, leaves it defined).
     */
    public static FlagEffect ofAnyCount(Insn in) {
        boolean byCl = (in.op == Op.SHIFT || in.op == Op.SHLD || in.op == Op.SHRD) && in.size2 == 1;
        boolean repCompare = in.op == Op.STRING && (in.rep || in.repne);
        if (!byCl && !repCompare) return of(in, 0);
        FlagEffect e = of(in, 0);
        for (int c = 1; c < 64; c++) e = e.or(of(in, c));
        return e;
    }

    /**
     * Whether decoded instruction {@code in} leaves its destination undefined, not only flags, when RCX
     * holds {@code rcx} and its source operand holds {@code source}: SHLD/SHRD of a 16-bit operand by a
     * masked count above 16 (SDM: "the result is undefined"; Intel hardware shifts the 48-bit string
     * dest:src:dest, AMD does otherwise), and BSF/BSR of a zero source (SDM: undefined; AMD documents
     * the destination unchanged, which Intel hardware also does).
     */
    public static boolean destinationUndefined(Insn in, long rcx, long source) {
        return switch (in.op) {
            case Op.SHLD, Op.SHRD -> maskCount(in.size, in.size2 == 1 ? rcx : in.imm) > in.size * 8;
            case Op.BSF, Op.BSR -> (source & (in.size == 8 ? -1L : (1L << (in.size * 8)) - 1)) == 0;
            default -> false;
        };
    }

    /** The flag names in {@code flags}, in bit order ("CF ZF"), or "none". */
    public static String names(long flags) {
        StringBuilder sb = new StringBuilder();
        long[] bits = {CF, PF, AF, ZF, SF, OF};
        String[] names = {"CF", "PF", "AF", "ZF", "SF", "OF"};
        for (int i = 0; i < bits.length; i++) {
            if ((flags & bits[i]) != 0) sb.append(sb.isEmpty() ? "" : " ").append(names[i]);
        }
        return sb.isEmpty() ? "none" : sb.toString();
    }

    private static final FlagEffect LOGIC = new FlagEffect(0, STATUS & ~AF, AF);
    private static final FlagEffect CARRY_IN = new FlagEffect(CF, STATUS, 0);
    private static final FlagEffect INC_DEC = new FlagEffect(0, STATUS & ~CF, 0);
    private static final FlagEffect MULTIPLY = new FlagEffect(0, CF | OF, SF | ZF | AF | PF);
    private static final FlagEffect DIVIDE = new FlagEffect(0, 0, STATUS);
    private static final FlagEffect BIT_TEST = new FlagEffect(0, CF, STATUS & ~CF);

    private static int maskCount(int size, long count) {
        return (int) count & (size == 8 ? 63 : 31);
    }

    /** MOVS/STOS/LODS touch no flag; CMPS/SCAS define all six, unless a REP prefix finds RCX already 0. */
    private static FlagEffect string(Insn in, long rcx) {
        if (in.sub != Op.STR_CMPS && in.sub != Op.STR_SCAS) return NONE;
        long count = in.addr32 ? rcx & 0xffffffffL : rcx;
        return (in.rep || in.repne) && count == 0 ? NONE : ALL;
    }
}
