package dev.faultline.conform;

import static dev.faultline.conform.Program.DATA_SIZE;
import static dev.faultline.conform.Program.MMIO_GPA;
import static dev.faultline.ref.x86.CpuState.CF;
import static dev.faultline.ref.x86.Op.BSF;
import static dev.faultline.ref.x86.Op.BSR;
import static dev.faultline.ref.x86.Op.SH_ROL;
import static dev.faultline.ref.x86.Op.SH_ROR;
import static dev.faultline.ref.x86.Op.SH_SAR;
import static dev.faultline.ref.x86.Op.SH_SHL;
import static dev.faultline.ref.x86.Op.SH_SHR;
import static dev.faultline.ref.x86.Op.SUB_ADD;
import static dev.faultline.ref.x86.Op.SUB_AND;
import static dev.faultline.ref.x86.Op.SUB_CMP;
import static dev.faultline.ref.x86.Op.SUB_OR;
import static dev.faultline.ref.x86.Op.SUB_SUB;
import static dev.faultline.ref.x86.Op.SUB_XOR;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Cond;
import dev.faultline.guest.asm.Label;
import dev.faultline.guest.asm.Mem;
import dev.faultline.guest.asm.Operand;
import dev.faultline.guest.asm.Reg;
import dev.faultline.ref.x86.FlagEffect;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Generates random guest programs from the instruction subset both backends support: arithmetic
 * and flags at every operand size, loads and stores inside RAM, bounded loops, forward branches,
 * calls, string stores, port I/O and MMIO above RAM. Every step is self-contained ({@link Op}).
 * The same (seed, index) always gives the same program.
 *
 * <p>It tracks which status flags are defined at each point ({@link FlagFlow}, from ref's table
 * {@link FlagEffect}) and never emits a step that reads one that may be undefined (a div then a
 * cmove, a shift by CL then a jo): such a step gets a flag-defining instruction (cmp, test, add, and,
 * neg, inc...) put before it.
 */
final class ProgramGenerator {
    private static final int[] SIZES = {8, 16, 32, 64};
    /** In the order of their ALU sub-operation (ref.x86.Op.SUB_ADD..SUB_CMP). */
    private static final String[] ALU = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
    private static final String[] SHIFTS = {"rol", "ror", "shl", "shr", "sar"};
    private static final int[] SHIFT_KINDS = {SH_ROL, SH_ROR, SH_SHL, SH_SHR, SH_SAR};
    /** ALU operations that read no flag, for flag-defining instructions. */
    private static final int[] DEFINING_ALU = {SUB_ADD, SUB_OR, SUB_AND, SUB_SUB, SUB_XOR, SUB_CMP};
    private static final long[] SPECIAL = {0, 1, -1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffffL,
            0x80000000L, 0xffffffffL, Long.MAX_VALUE, Long.MIN_VALUE};

    /** Registers steps may change: everything but RSP (the stack) and R15 (the data area). */
    private static final int[] POOL = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    /** The pool without RCX, for the bodies of loops that count in RCX. */
    private static final int[] POOL_NO_RCX = {0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

    private final SplittableRandom rnd;
    private final long seed;
    private final int index;
    /** The status flags defined at the point the next step goes (FlagFlow). */
    private long defined;

    ProgramGenerator(long seed, int index) {
        this.seed = seed;
        this.index = index;
        this.rnd = new SplittableRandom(seed * 0x9e3779b97f4a7c15L + index);
    }

    Program generate(int steps) {
        long[] init = new long[16];
        for (int r = 0; r < 16; r++) init[r] = value(64);
        defined = FlagEffect.STATUS;  // RFLAGS starts at 0x2: every flag has a known value
        List<Op> ops = new ArrayList<>();
        for (int i = 0; i < steps; i++) ops.add(next(POOL, 2));
        return new Program(seed, index, init, ops);
    }

    /** Draws the step at the current point and moves the point past it. */
    private Op next(int[] pool, int depth) {
        Op op = step(pool, depth);
        defined = op.flags().after(defined);
        return op;
    }

    /**
     * One step. Inside a loop body ({@code pool} without RCX) nothing may write RCX, the loop's counter:
     * string steps and nested loops (which use RCX) are drawn again.
     */
    private Op step(int[] pool, int depth) {
        boolean inLoop = pool == POOL_NO_RCX;
        while (true) {
            Op op = draw(pool, depth);
            if (!inLoop || !(op.text().startsWith("rep ") || op.text().startsWith("loop "))) return op;
        }
    }

    private Op draw(int[] pool, int depth) {
        int k = rnd.nextInt(depth > 0 ? 100 : 80);
        if (k < 22) return aluRegReg(pool);
        if (k < 32) return aluRegImm(pool);
        if (k < 38) return aluMem(pool);
        if (k < 42) return unary(pool);
        if (k < 48) return shift(pool);
        if (k < 52) return multiply(pool);
        if (k < 55) return divide(pool);
        if (k < 59) return extend(pool);
        if (k < 62) return lea(pool);
        if (k < 66) return setOrCmov(pool);
        if (k < 70) return loadStore(pool);
        if (k < 72) return pushPop(pool);
        if (k < 75) return exchange(pool);
        if (k < 77) return bitScan(pool);
        if (k < 78) return portIo(pool);
        if (k < 79) return mmio(pool);
        if (k < 80) return stringStore();
        if (k < 87) return forwardBranch(pool, depth);
        if (k < 94) return loop(depth);
        return call(pool, depth);
    }

    // ---- operands ------------------------------------------------------------------------------

    private int pick(int[] pool) { return pool[rnd.nextInt(pool.length)]; }
    private int size() { return SIZES[rnd.nextInt(SIZES.length)]; }
    private Reg reg(int[] pool, int bits) { return Reg.of(pick(pool), bits); }

    private long value(int bits) {
        long v = rnd.nextInt(3) == 0 ? SPECIAL[rnd.nextInt(SPECIAL.length)] : rnd.nextLong();
        return bits == 64 ? v : v & ((1L << bits) - 1);
    }

    /** A sign-extendable immediate for a {@code bits}-wide operation (imm8 or imm32 forms). */
    private long imm(int bits) {
        long v = rnd.nextBoolean() ? (byte) rnd.nextInt() : (int) value(32);
        if (bits == 8) return (byte) v;
        if (bits == 16) return (short) v;
        return v;
    }

    private Mem data(int bits) {
        int disp = rnd.nextInt(DATA_SIZE - 64);
        return switch (bits) {
            case 8 -> Mem.m8(Reg.R15, disp);
            case 16 -> Mem.m16(Reg.R15, disp);
            case 32 -> Mem.m32(Reg.R15, disp);
            default -> Mem.m64(Reg.R15, disp);
        };
    }

    /** A straight-line step: its instructions' flag effects, in order. */
    private static Op op(String text, Consumer<Assembler> emit, FlagEffect... effects) {
        return new Op(text, emit, FlagFlow.instructions(text, effects));
    }

    private static Op then(Op first, Op second) {
        return new Op(first.text() + "; " + second.text(), a -> {
            first.emit().accept(a);
            second.emit().accept(a);
        }, FlagFlow.sequence(first.flags(), second.flags()));
    }

    // ---- flags ---------------------------------------------------------------------------------

    /** {@code reader}, after a flag-defining instruction if a flag in {@code reads} may be undefined here. */
    private Op withDefined(int[] pool, long reads, Op reader) {
        Op definer = definer(pool, reads);
        return definer == null ? reader : then(definer, reader);
    }

    /**
     * An instruction that defines every flag in {@code needed}, if one may be undefined here (else null):
     * cmp, test, add, sub, and, or, xor (registers or an immediate), neg, or inc and dec (not for CF).
     */
    private Op definer(int[] pool, long needed) {
        if ((needed & ~defined) == 0) return null;
        while (true) {
            int bits = size();
            Reg d = reg(pool, bits);
            Op op = switch (rnd.nextInt(4)) {
                case 0 -> {
                    Reg s = reg(pool, bits);
                    yield rnd.nextBoolean() ? op("cmp " + d + ", " + s, a -> a.cmp(d, s), FlagEffect.alu(SUB_CMP))
                            : op("test " + d + ", " + s, a -> a.test(d, s), FlagEffect.test());
                }
                case 1 -> {
                    int sub = DEFINING_ALU[rnd.nextInt(DEFINING_ALU.length)];
                    long v = imm(bits);
                    yield op(ALU[sub] + " " + d + ", " + v, a -> alu(a, ALU[sub], d, v), FlagEffect.alu(sub));
                }
                case 2 -> op("neg " + d, a -> a.neg(d), FlagEffect.ALL);
                default -> rnd.nextBoolean() ? op("inc " + d, a -> a.inc(d), FlagEffect.incDec())
                        : op("dec " + d, a -> a.dec(d), FlagEffect.incDec());
            };
            if ((needed & ~op.flags().after(defined)) == 0) return op;
        }
    }

    /**
     * Generates the body of a branch, loop or call: steps drawn as if the flags defined on entry were
     * {@code entry}. The point of the enclosing step is left where it was.
     */
    private List<Op> body(int[] pool, int depth, int max, long entry) {
        long outer = defined;
        defined = entry;
        int n = 1 + rnd.nextInt(max);
        List<Op> ops = new ArrayList<>();
        for (int i = 0; i < n; i++) ops.add(next(pool, depth - 1));
        defined = outer;
        return ops;
    }

    // ---- steps ---------------------------------------------------------------------------------

    private Op aluRegReg(int[] pool) {
        int bits = size();
        int sub = rnd.nextInt(ALU.length);
        String name = ALU[sub];
        Reg d = reg(pool, bits), s = reg(pool, bits);
        return aluStep(pool, sub, op(name + " " + d + ", " + s, a -> alu(a, name, d, s), FlagEffect.alu(sub)));
    }

    private Op aluRegImm(int[] pool) {
        int bits = size();
        int sub = rnd.nextInt(ALU.length);
        String name = ALU[sub];
        Reg d = reg(pool, bits);
        long v = imm(bits);
        return aluStep(pool, sub, op(name + " " + d + ", " + v, a -> alu(a, name, d, v), FlagEffect.alu(sub)));
    }

    private Op aluMem(int[] pool) {
        int bits = size();
        int sub = rnd.nextInt(ALU.length);
        String name = ALU[sub];
        Reg r = reg(pool, bits);
        Mem m = data(bits);
        if (rnd.nextBoolean()) return aluStep(pool, sub, op(name + " " + r + ", " + m, a -> alu(a, name, r, m), FlagEffect.alu(sub)));
        return aluStep(pool, sub, op(name + " " + m + ", " + r, a -> alu(a, name, m, r), FlagEffect.alu(sub)));
    }

    /** adc and sbb read CF: defined first when it may not be. */
    private Op aluStep(int[] pool, int sub, Op op) {
        return withDefined(pool, FlagEffect.alu(sub).reads(), op);
    }

    private static void alu(Assembler a, String name, Operand d, Operand s) {
        switch (name) {
            case "add" -> a.add(d, s);
            case "or" -> a.or(d, s);
            case "adc" -> a.adc(d, s);
            case "sbb" -> a.sbb(d, s);
            case "and" -> a.and(d, s);
            case "sub" -> a.sub(d, s);
            case "xor" -> a.xor(d, s);
            default -> a.cmp(d, s);
        }
    }

    private static void alu(Assembler a, String name, Operand d, long v) {
        switch (name) {
            case "add" -> a.add(d, v);
            case "or" -> a.or(d, v);
            case "adc" -> a.adc(d, v);
            case "sbb" -> a.sbb(d, v);
            case "and" -> a.and(d, v);
            case "sub" -> a.sub(d, v);
            case "xor" -> a.xor(d, v);
            default -> a.cmp(d, v);
        }
    }

    private Op unary(int[] pool) {
        int bits = size();
        Operand d = rnd.nextInt(4) == 0 ? data(bits) : reg(pool, bits);
        return switch (rnd.nextInt(5)) {
            case 0 -> op("inc " + d, a -> a.inc(d), FlagEffect.incDec());
            case 1 -> op("dec " + d, a -> a.dec(d), FlagEffect.incDec());
            case 2 -> op("neg " + d, a -> a.neg(d), FlagEffect.ALL);
            case 3 -> op("not " + d, a -> a.not(d), FlagEffect.NONE);
            default -> {
                Reg s = reg(pool, bits);
                yield op("test " + d + ", " + s, a -> a.test(d, s), FlagEffect.test());
            }
        };
    }

    /**
     * A shift or rotate by an immediate (any count: 0 touches no flag, 1 defines OF, more leaves it
     * undefined) or by CL (count unknown here: the flags defined after it are those every count defines).
     */
    private Op shift(int[] pool) {
        int bits = size();
        int which = rnd.nextInt(SHIFTS.length);
        String name = SHIFTS[which];
        int kind = SHIFT_KINDS[which];
        Reg d = reg(pool, bits);
        if (rnd.nextBoolean()) {
            int count = rnd.nextInt(4) == 0 ? 1 : rnd.nextInt(bits == 64 ? 64 : 32);
            return op(name + " " + d + ", " + count, a -> {
                switch (name) {
                    case "rol" -> a.rol(d, count);
                    case "ror" -> a.ror(d, count);
                    case "shl" -> a.shl(d, count);
                    case "shr" -> a.shr(d, count);
                    default -> a.sar(d, count);
                }
            }, FlagEffect.shift(kind, bits / 8, count));
        }
        return op(name + " " + d + ", cl", a -> {
            switch (name) {
                case "rol" -> a.rol(d, Reg.CL);
                case "ror" -> a.ror(d, Reg.CL);
                case "shl" -> a.shl(d, Reg.CL);
                case "shr" -> a.shr(d, Reg.CL);
                default -> a.sar(d, Reg.CL);
            }
        }, FlagEffect.shiftAnyCount(kind, bits / 8));
    }

    private Op multiply(int[] pool) {
        int bits = rnd.nextInt(3) == 0 ? 16 : (rnd.nextBoolean() ? 32 : 64);
        Reg s = reg(pool, bits);
        return switch (rnd.nextInt(4)) {
            case 0 -> op("mul " + s, a -> a.mul(s), FlagEffect.multiply());
            case 1 -> op("imul " + s, a -> a.imul(s), FlagEffect.multiply());
            case 2 -> {
                Reg d = reg(pool, bits);
                yield op("imul " + d + ", " + s, a -> a.imul(d, s), FlagEffect.multiply());
            }
            default -> {
                Reg d = reg(pool, bits);
                long v = imm(bits == 16 ? 16 : 32);
                yield op("imul " + d + ", " + s + ", " + v, a -> a.imul(d, s, v), FlagEffect.multiply());
            }
        };
    }

    /** div/idiv with a divisor forced into [2, 0x7fff], so neither #DE nor overflow can happen. */
    private Op divide(int[] pool) {
        int bits = rnd.nextBoolean() ? 32 : 64;
        int[] divisors = java.util.Arrays.stream(pool).filter(r -> r != 0 && r != 2).toArray();
        Reg d = reg(divisors, bits);
        boolean signed = rnd.nextBoolean();
        return op((signed ? "idiv " : "div ") + d + " (divisor in [2, 0x7fff])", a -> {
            a.and(d, 0x7fff);
            a.or(d, 2);
            if (signed) {
                if (bits == 64) a.cqo(); else a.cdq();
                a.idiv(d);
            } else {
                a.xor(Reg.EDX, Reg.EDX);
                a.div(d);
            }
        }, FlagEffect.alu(SUB_AND), FlagEffect.alu(SUB_OR), signed ? FlagEffect.NONE : FlagEffect.alu(SUB_XOR), FlagEffect.divide());
    }

    private Op extend(int[] pool) {
        int from = rnd.nextBoolean() ? 8 : 16;
        int to = from == 8 ? SIZES[1 + rnd.nextInt(3)] : (rnd.nextBoolean() ? 32 : 64);
        Reg d = reg(pool, to);
        Operand s = rnd.nextInt(3) == 0 ? data(from) : reg(pool, from);
        return switch (rnd.nextInt(3)) {
            case 0 -> op("movzx " + d + ", " + s, a -> a.movzx(d, s), FlagEffect.NONE);
            case 1 -> op("movsx " + d + ", " + s, a -> a.movsx(d, s), FlagEffect.NONE);
            default -> {
                Reg d64 = reg(pool, 64), s32 = reg(pool, 32);
                yield op("movsxd " + d64 + ", " + s32, a -> a.movsxd(d64, s32), FlagEffect.NONE);
            }
        };
    }

    private Op lea(int[] pool) {
        int bits = rnd.nextBoolean() ? 64 : 32;
        Reg d = reg(pool, bits);
        Reg base = reg(pool, 64), index = reg(pool, 64);
        int scale = 1 << rnd.nextInt(4);
        int disp = rnd.nextBoolean() ? (byte) rnd.nextInt() : rnd.nextInt();
        Mem m = rnd.nextInt(3) == 0 ? Mem.addr(base, disp) : Mem.addr(base, index, scale, disp);
        return op("lea " + d + ", " + m, a -> a.lea(d, m), FlagEffect.NONE);
    }

    private Op setOrCmov(int[] pool) {
        Cond c = Cond.values()[rnd.nextInt(16)];
        long reads = FlagEffect.condition(c.code());
        if (rnd.nextBoolean()) {
            Operand d = rnd.nextInt(4) == 0 ? data(8) : reg(pool, 8);
            return withDefined(pool, reads, op("set" + c.suffix() + " " + d, a -> a.set(c, d), FlagEffect.reading(reads)));
        }
        int bits = SIZES[1 + rnd.nextInt(3)];
        Reg d = reg(pool, bits);
        Operand s = rnd.nextInt(3) == 0 ? data(bits) : reg(pool, bits);
        return withDefined(pool, reads, op("cmov" + c.suffix() + " " + d + ", " + s, a -> a.cmov(c, d, s), FlagEffect.reading(reads)));
    }

    private Op loadStore(int[] pool) {
        int bits = size();
        Reg r = reg(pool, bits);
        if (rnd.nextInt(3) == 0) {
            // Indexed: the index is masked first, so the access stays inside the data area.
            Reg idx = reg(pool, 64);
            int scale = 1 << rnd.nextInt(4);
            int disp = rnd.nextInt(DATA_SIZE - 8 * 256 - 64);
            boolean store = rnd.nextBoolean();
            return op((store ? "store " : "load ") + r + " at [r15 + (" + idx + " & 0xff)*" + scale + " + " + disp + "]", a -> {
                a.and(idx, 0xff);
                Mem m = switch (bits) {
                    case 8 -> Mem.m8(Reg.R15, idx, scale, disp);
                    case 16 -> Mem.m16(Reg.R15, idx, scale, disp);
                    case 32 -> Mem.m32(Reg.R15, idx, scale, disp);
                    default -> Mem.m64(Reg.R15, idx, scale, disp);
                };
                if (store) a.mov(m, r); else a.mov(r, m);
            }, FlagEffect.alu(SUB_AND));
        }
        Mem m = data(bits);
        if (rnd.nextBoolean()) return op("mov " + m + ", " + r, a -> a.mov(m, r), FlagEffect.NONE);
        if (rnd.nextInt(3) == 0) {
            long v = imm(bits == 64 ? 32 : bits);
            return op("mov " + m + ", " + v, a -> a.mov(m, v), FlagEffect.NONE);
        }
        return op("mov " + r + ", " + m, a -> a.mov(r, m), FlagEffect.NONE);
    }

    private Op pushPop(int[] pool) {
        Reg s = reg(pool, 64), d = reg(pool, 64);
        if (rnd.nextInt(3) == 0) {
            long v = (int) value(32);
            return op("push " + v + "; pop " + d, a -> a.push(v).pop(d), FlagEffect.NONE);
        }
        return op("push " + s + "; pop " + d, a -> a.push(s).pop(d), FlagEffect.NONE);
    }

    private Op exchange(int[] pool) {
        int bits = size();
        Reg r = reg(pool, bits);
        Mem m = data(bits);
        return switch (rnd.nextInt(4)) {
            case 0 -> {
                Reg o = reg(pool, bits);
                yield op("xchg " + o + ", " + r, a -> a.xchg(o, r), FlagEffect.NONE);
            }
            case 1 -> op("xchg " + m + ", " + r, a -> a.xchg(m, r), FlagEffect.NONE);
            case 2 -> op("lock xadd " + m + ", " + r, a -> a.lock().xadd(m, r), FlagEffect.alu(SUB_ADD));
            default -> op("lock cmpxchg " + m + ", " + r, a -> a.lock().cmpxchg(m, r), FlagEffect.alu(SUB_CMP));
        };
    }

    /**
     * bsf/bsr r64, r64 with a source made non-zero first (their destination is undefined for zero).
     * tzcnt, lzcnt and popcnt are left out: this machine's KVM (PVM backend) runs them through KVM's
     * instruction emulator, which treats tzcnt as bsf and lzcnt as bsr and fails on popcnt, so KVM
     * cannot be the reference for them here (docs/kvm-backend.md). The ref backend's own tests check
     * them against the host CPU natively.
     */
    private Op bitScan(int[] pool) {
        Reg d = reg(pool, 64), s = reg(pool, 64);
        boolean reverse = rnd.nextBoolean();
        return op((reverse ? "bsr " : "bsf ") + d + ", " + s + " (source made non-zero)", a -> {
            a.or(s, 1);
            int rex = 0x48 | (d.number() >= 8 ? 4 : 0) | (s.number() >= 8 ? 1 : 0);
            int modrm = 0xc0 | (d.number() & 7) << 3 | (s.number() & 7);
            a.db(rex, 0x0f, reverse ? 0xbd : 0xbc, modrm);
        }, FlagEffect.alu(SUB_OR), FlagEffect.bitScan(reverse ? BSR : BSF));
    }

    private Op portIo(int[] pool) {
        Reg r = reg(pool, 32);
        if (rnd.nextBoolean()) {
            return op("out " + Integer.toHexString(BootProtocol.PORT_REPORT) + ", " + r + " (via eax, edx)", a -> {
                a.mov(Reg.EAX, r);
                a.mov(Reg.EDX, BootProtocol.PORT_REPORT);
                a.out(Reg.DX, Reg.EAX);
            }, FlagEffect.NONE);
        }
        int port = 0x60 + rnd.nextInt(16);
        return op("in eax, 0x" + Integer.toHexString(port), a -> a.in(Reg.EAX, port), FlagEffect.NONE);
    }

    private Op mmio(int[] pool) {
        int bits = size();
        Reg addr = reg(pool, 64);
        int[] others = java.util.Arrays.stream(pool).filter(r -> r != addr.number()).toArray();
        Reg v = reg(others, bits);
        long gpa = MMIO_GPA + (rnd.nextInt(256) * 8L);
        boolean write = rnd.nextBoolean();
        Mem m = switch (bits) {
            case 8 -> Mem.m8(addr);
            case 16 -> Mem.m16(addr);
            case 32 -> Mem.m32(addr);
            default -> Mem.m64(addr);
        };
        return op((write ? "mmio write " + v + " to 0x" : "mmio read " + v + " from 0x") + Long.toHexString(gpa), a -> {
            a.movabs(addr, gpa);
            if (write) a.mov(m, v); else a.mov(v, m);
        }, FlagEffect.NONE);
    }

    private Op stringStore() {
        int count = 1 + rnd.nextInt(64);
        int off = rnd.nextInt(DATA_SIZE - 8 * 64 - 64);
        boolean quad = rnd.nextBoolean();
        boolean move = rnd.nextBoolean();
        int srcOff = rnd.nextInt(DATA_SIZE - 8 * 64 - 64);
        return op("rep " + (move ? "movs" : "stos") + (quad ? "q" : "b") + " x" + count + " at r15+" + off, a -> {
            a.lea(Reg.RDI, Mem.addr(Reg.R15, off));
            if (move) a.lea(Reg.RSI, Mem.addr(Reg.R15, srcOff));
            a.mov(Reg.ECX, count);
            a.rep();
            if (move) { if (quad) a.movsq(); else a.movsb(); } else { if (quad) a.stosq(); else a.stosb(); }
        }, FlagEffect.NONE);
    }

    /** A conditional jump over a few steps; its condition's flags are defined first when they may not be. */
    private Op forwardBranch(int[] pool, int depth) {
        Cond c = Cond.values()[rnd.nextInt(16)];
        Op definer = definer(pool, FlagEffect.condition(c.code()));
        long entry = definer == null ? defined : definer.flags().after(defined);
        List<Op> inner = body(pool, depth, 3, entry);
        String text = "j" + c.suffix() + " over " + inner;
        Op branch = new Op(text, a -> {
            Label skip = a.newLabel();
            a.j(c, skip);
            for (Op o : inner) o.emit().accept(a);
            a.bind(skip);
        }, FlagFlow.branchOver(text, c.code(), inner));
        return definer == null ? branch : then(definer, branch);
    }

    /**
     * A loop counted in RCX (1..6 iterations; the body never writes RCX). The body is drawn as if CF were
     * undefined on entry: at the top of the loop the flags are those of the entry joined with those after
     * {@code dec ecx}, which defines all but CF, so that is all the back edge can take away.
     */
    private Op loop(int depth) {
        int iterations = 1 + rnd.nextInt(6);
        List<Op> inner = body(POOL_NO_RCX, depth, 3, defined & ~CF);
        String text = "loop x" + iterations + " " + inner;
        return new Op(text, a -> {
            Label top = a.newLabel();
            a.push(Reg.RCX);
            a.mov(Reg.ECX, iterations);
            a.bind(top);
            for (Op o : inner) o.emit().accept(a);
            a.dec(Reg.ECX);
            a.jnz(top);
            a.pop(Reg.RCX);
        }, FlagFlow.loop(text, inner, FlagEffect.incDec(), FlagEffect.reading(FlagEffect.condition(Cond.NE.code()))));
    }

    private Op call(int[] pool, int depth) {
        List<Op> inner = body(pool, depth, 3, defined);
        return new Op("call { " + inner + " }", a -> {
            Label sub = a.newLabel(), over = a.newLabel();
            a.jmp(over);
            a.bind(sub);
            for (Op o : inner) o.emit().accept(a);
            a.ret();
            a.bind(over);
            a.call(sub);
        }, FlagFlow.sequence(inner));
    }
}
