package dev.faultline.conform;

import static dev.faultline.conform.Program.DATA_SIZE;
import static dev.faultline.conform.Program.MMIO_GPA;
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
import dev.faultline.guest.asm.Mem;
import dev.faultline.guest.asm.Operand;
import dev.faultline.guest.asm.Reg;
import dev.faultline.ref.x86.FlagEffect;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * The straight-line steps of generated programs, drawn from a shared random source: arithmetic and
 * flags at every operand size, loads and stores inside the data area, string stores, port I/O and MMIO
 * above RAM, and the flag-defining instructions {@link ProgramGenerator} puts before a step that reads
 * flags which may be undefined. Each step declares, with ref's table {@link FlagEffect}, what every
 * instruction it emits does to the status flags; a new kind of step must do the same.
 */
final class InstructionSteps {
    static final int[] SIZES = {8, 16, 32, 64};
    /** In the order of their ALU sub-operation (ref.x86.Op.SUB_ADD..SUB_CMP). */
    private static final String[] ALU = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
    private static final String[] SHIFTS = {"rol", "ror", "shl", "shr", "sar"};
    private static final int[] SHIFT_KINDS = {SH_ROL, SH_ROR, SH_SHL, SH_SHR, SH_SAR};
    /** ALU operations that read no flag, for flag-defining instructions. */
    private static final int[] DEFINING_ALU = {SUB_ADD, SUB_OR, SUB_AND, SUB_SUB, SUB_XOR, SUB_CMP};
    private static final long[] SPECIAL = {0, 1, -1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffffL,
            0x80000000L, 0xffffffffL, Long.MAX_VALUE, Long.MIN_VALUE};

    private final SplittableRandom rnd;

    InstructionSteps(SplittableRandom rnd) {
        this.rnd = rnd;
    }

    // ---- operands ------------------------------------------------------------------------------

    private int pick(int[] pool) { return pool[rnd.nextInt(pool.length)]; }
    private int size() { return SIZES[rnd.nextInt(SIZES.length)]; }
    private Reg reg(int[] pool, int bits) { return Reg.of(pick(pool), bits); }

    /** A register or operand value: an edge case (0, -1, 0x7fffffff...) one time in three, else random. */
    long value(int bits) {
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

    /** {@code first}, then {@code second}, as one step. */
    static Op then(Op first, Op second) {
        return new Op(first.text() + "; " + second.text(), a -> {
            first.emit().accept(a);
            second.emit().accept(a);
        }, FlagFlow.sequence(first.flags(), second.flags()));
    }

    // ---- flag-defining instructions ------------------------------------------------------------

    /**
     * An instruction that defines every flag in {@code needed} (given {@code defined} before it), to put
     * before a step that reads them: cmp or test of two registers; add, sub, and, or, xor or cmp with an
     * immediate; neg; inc or dec (when CF is not needed). Null when they are all defined already.
     */
    Op definer(int[] pool, long needed, long defined) {
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

    // ---- steps (each declares the flag effects of what it emits, in order) ---------------------

    Op aluRegReg(int[] pool) {
        int bits = size();
        int sub = rnd.nextInt(ALU.length);
        String name = ALU[sub];
        Reg d = reg(pool, bits), s = reg(pool, bits);
        return op(name + " " + d + ", " + s, a -> alu(a, name, d, s), FlagEffect.alu(sub));
    }

    Op aluRegImm(int[] pool) {
        int bits = size();
        int sub = rnd.nextInt(ALU.length);
        String name = ALU[sub];
        Reg d = reg(pool, bits);
        long v = imm(bits);
        return op(name + " " + d + ", " + v, a -> alu(a, name, d, v), FlagEffect.alu(sub));
    }

    Op aluMem(int[] pool) {
        int bits = size();
        int sub = rnd.nextInt(ALU.length);
        String name = ALU[sub];
        Reg r = reg(pool, bits);
        Mem m = data(bits);
        if (rnd.nextBoolean()) return op(name + " " + r + ", " + m, a -> alu(a, name, r, m), FlagEffect.alu(sub));
        return op(name + " " + m + ", " + r, a -> alu(a, name, m, r), FlagEffect.alu(sub));
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

    Op unary(int[] pool) {
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
    Op shift(int[] pool) {
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

    Op multiply(int[] pool) {
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
    Op divide(int[] pool) {
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

    Op extend(int[] pool) {
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

    Op lea(int[] pool) {
        int bits = rnd.nextBoolean() ? 64 : 32;
        Reg d = reg(pool, bits);
        Reg base = reg(pool, 64), index = reg(pool, 64);
        int scale = 1 << rnd.nextInt(4);
        int disp = rnd.nextBoolean() ? (byte) rnd.nextInt() : rnd.nextInt();
        Mem m = rnd.nextInt(3) == 0 ? Mem.addr(base, disp) : Mem.addr(base, index, scale, disp);
        return op("lea " + d + ", " + m, a -> a.lea(d, m), FlagEffect.NONE);
    }

    Op setOrCmov(int[] pool) {
        Cond c = Cond.values()[rnd.nextInt(16)];
        long reads = FlagEffect.condition(c.code());
        if (rnd.nextBoolean()) {
            Operand d = rnd.nextInt(4) == 0 ? data(8) : reg(pool, 8);
            return op("set" + c.suffix() + " " + d, a -> a.set(c, d), FlagEffect.reading(reads));
        }
        int bits = SIZES[1 + rnd.nextInt(3)];
        Reg d = reg(pool, bits);
        Operand s = rnd.nextInt(3) == 0 ? data(bits) : reg(pool, bits);
        return op("cmov" + c.suffix() + " " + d + ", " + s, a -> a.cmov(c, d, s), FlagEffect.reading(reads));
    }

    Op loadStore(int[] pool) {
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

    Op pushPop(int[] pool) {
        Reg s = reg(pool, 64), d = reg(pool, 64);
        if (rnd.nextInt(3) == 0) {
            long v = (int) value(32);
            return op("push " + v + "; pop " + d, a -> a.push(v).pop(d), FlagEffect.NONE);
        }
        return op("push " + s + "; pop " + d, a -> a.push(s).pop(d), FlagEffect.NONE);
    }

    Op exchange(int[] pool) {
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
    Op bitScan(int[] pool) {
        Reg d = reg(pool, 64), s = reg(pool, 64);
        boolean reverse = rnd.nextBoolean();
        return op((reverse ? "bsr " : "bsf ") + d + ", " + s + " (source made non-zero)", a -> {
            a.or(s, 1);
            int rex = 0x48 | (d.number() >= 8 ? 4 : 0) | (s.number() >= 8 ? 1 : 0);
            int modrm = 0xc0 | (d.number() & 7) << 3 | (s.number() & 7);
            a.db(rex, 0x0f, reverse ? 0xbd : 0xbc, modrm);
        }, FlagEffect.alu(SUB_OR), FlagEffect.bitScan(reverse ? BSR : BSF));
    }

    Op portIo(int[] pool) {
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

    Op mmio(int[] pool) {
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

    Op stringStore() {
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
}
