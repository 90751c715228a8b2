package dev.faultline.guest.asm;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A fluent assembler for a subset of x86-64 in 64-bit mode (docs/assembler.md lists it). Each call
 * appends one instruction; {@link #assemble()} resolves labels and returns the machine code, to be
 * loaded at {@link #origin()}.
 *
 * <p>Encodings follow what GNU as emits for the same Intel-syntax line (checked by tests): register
 * to register forms use the {@code r/m, reg} opcode (89, 01, ...), immediates use the sign-extended
 * imm8 form when the value fits, the accumulator short forms otherwise.
 *
 * <p>Branches to labels ({@code jmp}, {@code jcc}) are relaxed like GNU as does: they start as rel8
 * and become rel32 only when the displacement does not fit in a signed byte; {@code call} is always
 * rel32. RIP-relative operands naming a label get their disp32 at assembly.
 *
 * <p>Not thread-safe; one assembler builds one piece of code.
 */
public final class Assembler {
    private static final int JMP = 0, JCC = 1, CALL = 2;

    private final long origin;
    private final List<Object> items = new ArrayList<>();
    private Buf cur;
    private int labelCount;
    private boolean pendingLock, pendingRep;
    private long[] resolved; // byte offset of each item once assembled

    public Assembler(long origin) {
        this.origin = origin;
    }

    public long origin() { return origin; }

    // ---------------------------------------------------------------- labels and data

    public Label newLabel() { return new Label(this, "L" + labelCount++); }

    /** A label with a name (it only shows in messages and in {@link Mem#toString()}). */
    public Label newLabel(String name) { labelCount++; return new Label(this, name); }

    /** Binds {@code label} to the current position. */
    public Assembler bind(Label label) {
        if (label.owner != this) throw new IllegalArgumentException("label " + label + " belongs to another assembler");
        if (label.isBound()) throw new IllegalStateException("label " + label + " is already bound");
        checkNoPendingPrefix("a label");
        cur = null;
        label.item = items.size();
        items.add(label);
        return this;
    }

    /** A new label bound at the current position. */
    public Label here() {
        Label l = newLabel();
        bind(l);
        return l;
    }

    public Assembler db(int... bytes) {
        Buf b = buf();
        for (int v : bytes) b.put(v);
        return this;
    }

    public Assembler bytes(byte[] data) {
        Buf b = buf();
        for (byte v : data) b.put(v);
        return this;
    }

    public Assembler dd(int value) { buf().putLe(value, 4); return this; }

    public Assembler dq(long value) { buf().putLe(value, 8); return this; }

    /** Pads with NOP (0x90) bytes up to a multiple of {@code alignment} (a power of two) from the origin. */
    public Assembler align(int alignment) {
        if (alignment <= 0 || Integer.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment " + alignment + " is not a power of two");
        }
        checkNoPendingPrefix("an alignment");
        cur = null;
        items.add(new Align(alignment));
        return this;
    }

    // ---------------------------------------------------------------- prefixes

    /** LOCK prefix for the next instruction (xadd, cmpxchg, add ... with a memory destination). */
    public Assembler lock() { pendingLock = true; return this; }

    /** REP prefix for the next string instruction (stos, movs). */
    public Assembler rep() { pendingRep = true; return this; }

    // ---------------------------------------------------------------- moves

    /** {@code mov dst, src}: register to register, load, or store. */
    public Assembler mov(Operand dst, Operand src) {
        if (dst instanceof Reg d && src instanceof Reg s) {
            int size = sameSize("mov", d, s);
            return rm(size, size == 8 ? 0x88 : 0x89, s.number(), s, d, 0, 0);
        }
        if (dst instanceof Reg d && src instanceof Mem m) {
            int size = memSize("mov", d, m);
            return rm(size, size == 8 ? 0x8a : 0x8b, d.number(), d, m, 0, 0);
        }
        if (dst instanceof Mem m && src instanceof Reg s) {
            int size = memSize("mov", s, m);
            return rm(size, size == 8 ? 0x88 : 0x89, s.number(), s, m, 0, 0);
        }
        throw new IllegalArgumentException("mov " + dst + ", " + src + ": x86 has no memory-to-memory mov");
    }

    /**
     * {@code mov dst, imm}. A 64-bit register takes the sign-extended imm32 form when the value fits
     * and {@code movabs} (imm64) otherwise; a 64-bit memory destination needs a sign-extended imm32.
     */
    public Assembler mov(Operand dst, long imm) {
        int size = sized("mov", dst);
        if (dst instanceof Reg r) {
            if (size == 64) {
                if (imm == (int) imm) return rm(64, 0xc7, 0, null, r, 4, imm);
                return movabs(r, imm);
            }
            long v = imm(imm, size, "mov", dst);
            return opReg(size, 0xb0 + (size == 8 ? 0 : 8), r, size / 8, v);
        }
        long v = imm(imm, size, "mov", dst);
        return rm(size, size == 8 ? 0xc6 : 0xc7, 0, null, dst, Math.min(size, 32) / 8, v);
    }

    /** {@code movabs r64, imm64}: always the 10-byte form. */
    public Assembler movabs(Reg dst, long imm) {
        if (dst.bits() != 64) throw new IllegalArgumentException("movabs needs a 64-bit register, not " + dst);
        return opReg(64, 0xb8, dst, 8, imm);
    }

    /** {@code movzx dst, src} with an 8- or 16-bit source. */
    public Assembler movzx(Reg dst, Operand src) { return extend("movzx", 0x0fb6, dst, src); }

    /** {@code movsx dst, src} with an 8- or 16-bit source (see {@link #movsxd} for 32-bit). */
    public Assembler movsx(Reg dst, Operand src) { return extend("movsx", 0x0fbe, dst, src); }

    /** {@code movsxd r64, r/m32}. */
    public Assembler movsxd(Reg dst, Operand src) {
        if (dst.bits() != 64 || src.bits() != 32) {
            throw new IllegalArgumentException("movsxd " + dst + ", " + src + ": needs a 64-bit destination and a 32-bit source");
        }
        return rm(64, 0x63, dst.number(), dst, src, 0, 0);
    }

    private Assembler extend(String mn, int opcode, Reg dst, Operand src) {
        int from = src.bits();
        if (from != 8 && from != 16) {
            throw new IllegalArgumentException(mn + " " + dst + ", " + src + ": the source must be 8 or 16 bits");
        }
        if (dst.bits() <= from) {
            throw new IllegalArgumentException(mn + " " + dst + ", " + src + ": the destination must be wider than the source");
        }
        return rm(dst.bits(), opcode + (from == 16 ? 1 : 0), dst.number(), dst, src, 0, 0);
    }

    /** {@code lea dst, [address]} (the memory operand's size is ignored). */
    public Assembler lea(Reg dst, Mem address) {
        if (dst.bits() == 8) throw new IllegalArgumentException("lea needs a 16-, 32- or 64-bit destination, not " + dst);
        return rm(dst.bits(), 0x8d, dst.number(), dst, address, 0, 0);
    }

    /** {@code xchg a, b}; with the accumulator and another register, the one-byte 90+r form. */
    public Assembler xchg(Operand a, Reg b) {
        int size = a instanceof Reg ra ? sameSize("xchg", ra, b) : memSize("xchg", b, (Mem) a);
        if (a instanceof Reg ra && size != 8) {
            boolean eaxEax = size == 32 && ra.number() == 0 && b.number() == 0;
            // GNU as writes xchg rax, rax as a plain nop (it changes nothing either way).
            if (size == 64 && ra.number() == 0 && b.number() == 0) return plain(32, 0x90, 0, 0);
            if (!eaxEax && b.number() == 0) return opReg(size, 0x90, ra, 0, 0);
            if (!eaxEax && ra.number() == 0) return opReg(size, 0x90, b, 0, 0);
        }
        return rm(size, size == 8 ? 0x86 : 0x87, b.number(), b, a, 0, 0);
    }

    // ---------------------------------------------------------------- arithmetic and logic

    public Assembler add(Operand dst, Operand src) { return alu(0, "add", dst, src); }
    public Assembler or(Operand dst, Operand src) { return alu(1, "or", dst, src); }
    public Assembler adc(Operand dst, Operand src) { return alu(2, "adc", dst, src); }
    public Assembler sbb(Operand dst, Operand src) { return alu(3, "sbb", dst, src); }
    public Assembler and(Operand dst, Operand src) { return alu(4, "and", dst, src); }
    public Assembler sub(Operand dst, Operand src) { return alu(5, "sub", dst, src); }
    public Assembler xor(Operand dst, Operand src) { return alu(6, "xor", dst, src); }
    public Assembler cmp(Operand dst, Operand src) { return alu(7, "cmp", dst, src); }

    public Assembler add(Operand dst, long imm) { return alu(0, "add", dst, imm); }
    public Assembler or(Operand dst, long imm) { return alu(1, "or", dst, imm); }
    public Assembler adc(Operand dst, long imm) { return alu(2, "adc", dst, imm); }
    public Assembler sbb(Operand dst, long imm) { return alu(3, "sbb", dst, imm); }
    public Assembler and(Operand dst, long imm) { return alu(4, "and", dst, imm); }
    public Assembler sub(Operand dst, long imm) { return alu(5, "sub", dst, imm); }
    public Assembler xor(Operand dst, long imm) { return alu(6, "xor", dst, imm); }
    public Assembler cmp(Operand dst, long imm) { return alu(7, "cmp", dst, imm); }

    private Assembler alu(int ext, String mn, Operand dst, Operand src) {
        if (dst instanceof Reg d && src instanceof Reg s) {
            int size = sameSize(mn, d, s);
            return rm(size, ext * 8 + (size == 8 ? 0 : 1), s.number(), s, d, 0, 0);
        }
        if (dst instanceof Reg d && src instanceof Mem m) {
            int size = memSize(mn, d, m);
            return rm(size, ext * 8 + (size == 8 ? 2 : 3), d.number(), d, m, 0, 0);
        }
        if (dst instanceof Mem m && src instanceof Reg s) {
            int size = memSize(mn, s, m);
            return rm(size, ext * 8 + (size == 8 ? 0 : 1), s.number(), s, m, 0, 0);
        }
        throw new IllegalArgumentException(mn + " " + dst + ", " + src + ": x86 has no memory-to-memory form");
    }

    private Assembler alu(int ext, String mn, Operand dst, long imm) {
        int size = sized(mn, dst);
        long v = imm(imm, size, mn, dst);
        boolean acc = dst instanceof Reg r && r.number() == 0;
        if (size == 8) {
            return acc ? plain(8, ext * 8 + 4, 1, v) : rm(8, 0x80, ext, null, dst, 1, v);
        }
        if (v == (byte) v) return rm(size, 0x83, ext, null, dst, 1, v);
        int immLen = size == 16 ? 2 : 4;
        return acc ? plain(size, ext * 8 + 5, immLen, v) : rm(size, 0x81, ext, null, dst, immLen, v);
    }

    /** {@code test dst, src} (register or memory, register). */
    public Assembler test(Operand dst, Reg src) {
        int size = dst instanceof Reg d ? sameSize("test", d, src) : memSize("test", src, (Mem) dst);
        return rm(size, size == 8 ? 0x84 : 0x85, src.number(), src, dst, 0, 0);
    }

    public Assembler test(Operand dst, long imm) {
        int size = sized("test", dst);
        long v = imm(imm, size, "test", dst);
        int immLen = Math.min(size, 32) / 8;
        if (dst instanceof Reg r && r.number() == 0) return plain(size, size == 8 ? 0xa8 : 0xa9, immLen, v);
        return rm(size, size == 8 ? 0xf6 : 0xf7, 0, null, dst, immLen, v);
    }

    public Assembler inc(Operand dst) { return unary(0xfe, 0, "inc", dst); }
    public Assembler dec(Operand dst) { return unary(0xfe, 1, "dec", dst); }
    public Assembler not(Operand dst) { return unary(0xf6, 2, "not", dst); }
    public Assembler neg(Operand dst) { return unary(0xf6, 3, "neg", dst); }
    /** Unsigned {@code rdx:rax = rax * src} (and the narrower forms). */
    public Assembler mul(Operand src) { return unary(0xf6, 4, "mul", src); }
    /** Signed one-operand {@code rdx:rax = rax * src}. */
    public Assembler imul(Operand src) { return unary(0xf6, 5, "imul", src); }
    /** Unsigned {@code rax = rdx:rax / src, rdx = remainder}; divide by zero raises #DE (a triple fault here). */
    public Assembler div(Operand src) { return unary(0xf6, 6, "div", src); }
    public Assembler idiv(Operand src) { return unary(0xf6, 7, "idiv", src); }

    private Assembler unary(int opcode8, int ext, String mn, Operand dst) {
        int size = sized(mn, dst);
        return rm(size, size == 8 ? opcode8 : opcode8 + 1, ext, null, dst, 0, 0);
    }

    /** {@code imul dst, src}: signed multiply, low half kept. */
    public Assembler imul(Reg dst, Operand src) {
        int size = src instanceof Reg s ? sameSize("imul", dst, s) : memSize("imul", dst, (Mem) src);
        if (size == 8) throw new IllegalArgumentException("imul " + dst + ", " + src + ": no 8-bit two-operand form");
        return rm(size, 0x0faf, dst.number(), dst, src, 0, 0);
    }

    /** {@code imul dst, src, imm}. */
    public Assembler imul(Reg dst, Operand src, long imm) {
        int size = src instanceof Reg s ? sameSize("imul", dst, s) : memSize("imul", dst, (Mem) src);
        if (size == 8) throw new IllegalArgumentException("imul " + dst + ", " + src + ", imm: no 8-bit form");
        long v = imm(imm, size, "imul", dst);
        if (v == (byte) v) return rm(size, 0x6b, dst.number(), dst, src, 1, v);
        return rm(size, 0x69, dst.number(), dst, src, size == 16 ? 2 : 4, v);
    }

    /** Sign-extends rax into rdx:rax (before a 64-bit idiv). */
    public Assembler cqo() { return plain(64, 0x99, 0, 0); }

    /** Sign-extends eax into edx:eax (before a 32-bit idiv). */
    public Assembler cdq() { return plain(32, 0x99, 0, 0); }

    // ---------------------------------------------------------------- shifts and rotates

    public Assembler rol(Operand dst, int count) { return shift(0, "rol", dst, count); }
    public Assembler ror(Operand dst, int count) { return shift(1, "ror", dst, count); }
    public Assembler shl(Operand dst, int count) { return shift(4, "shl", dst, count); }
    public Assembler shr(Operand dst, int count) { return shift(5, "shr", dst, count); }
    public Assembler sar(Operand dst, int count) { return shift(7, "sar", dst, count); }

    /** By CL: the second operand must be {@link Reg#CL}. */
    public Assembler rol(Operand dst, Reg cl) { return shiftCl(0, "rol", dst, cl); }
    public Assembler ror(Operand dst, Reg cl) { return shiftCl(1, "ror", dst, cl); }
    public Assembler shl(Operand dst, Reg cl) { return shiftCl(4, "shl", dst, cl); }
    public Assembler shr(Operand dst, Reg cl) { return shiftCl(5, "shr", dst, cl); }
    public Assembler sar(Operand dst, Reg cl) { return shiftCl(7, "sar", dst, cl); }

    private Assembler shift(int ext, String mn, Operand dst, int count) {
        int size = sized(mn, dst);
        if (count < 0 || count > 255) throw new IllegalArgumentException(mn + " " + dst + ", " + count + ": count outside 0..255");
        if (count == 1) return rm(size, size == 8 ? 0xd0 : 0xd1, ext, null, dst, 0, 0);
        return rm(size, size == 8 ? 0xc0 : 0xc1, ext, null, dst, 1, count);
    }

    private Assembler shiftCl(int ext, String mn, Operand dst, Reg cl) {
        if (cl != Reg.CL) throw new IllegalArgumentException(mn + " " + dst + ", " + cl + ": a variable count must be in cl");
        int size = sized(mn, dst);
        return rm(size, size == 8 ? 0xd2 : 0xd3, ext, null, dst, 0, 0);
    }

    // ---------------------------------------------------------------- conditional moves and sets

    /** {@code setcc r/m8}. */
    public Assembler set(Cond cc, Operand dst) {
        if (dst.bits() != 8) throw new IllegalArgumentException("set" + cc.suffix() + " " + dst + ": needs an 8-bit operand");
        return rm(8, 0x0f90 + cc.code(), 0, null, dst, 0, 0);
    }

    /** {@code cmovcc dst, src}. */
    public Assembler cmov(Cond cc, Reg dst, Operand src) {
        int size = src instanceof Reg s ? sameSize("cmov", dst, s) : memSize("cmov", dst, (Mem) src);
        if (size == 8) throw new IllegalArgumentException("cmov" + cc.suffix() + " " + dst + ": no 8-bit form");
        return rm(size, 0x0f40 + cc.code(), dst.number(), dst, src, 0, 0);
    }

    // ---------------------------------------------------------------- atomics

    /** {@code xadd dst, src}; precede with {@link #lock()} for an atomic fetch-and-add. */
    public Assembler xadd(Operand dst, Reg src) {
        int size = dst instanceof Reg d ? sameSize("xadd", d, src) : memSize("xadd", src, (Mem) dst);
        return rm(size, size == 8 ? 0x0fc0 : 0x0fc1, src.number(), src, dst, 0, 0);
    }

    /** {@code cmpxchg dst, src} (compares with the accumulator); precede with {@link #lock()}. */
    public Assembler cmpxchg(Operand dst, Reg src) {
        int size = dst instanceof Reg d ? sameSize("cmpxchg", d, src) : memSize("cmpxchg", src, (Mem) dst);
        return rm(size, size == 8 ? 0x0fb0 : 0x0fb1, src.number(), src, dst, 0, 0);
    }

    // ---------------------------------------------------------------- control flow

    /** {@code jmp label}: rel8 when it reaches, rel32 otherwise. */
    public Assembler jmp(Label target) { return branch(JMP, 0, target); }

    /** {@code jcc label}: rel8 when it reaches, rel32 otherwise. */
    public Assembler j(Cond cc, Label target) { return branch(JCC, cc.code(), target); }

    public Assembler jo(Label t) { return j(Cond.O, t); }
    public Assembler jno(Label t) { return j(Cond.NO, t); }
    public Assembler jb(Label t) { return j(Cond.B, t); }
    public Assembler jae(Label t) { return j(Cond.AE, t); }
    public Assembler je(Label t) { return j(Cond.E, t); }
    public Assembler jz(Label t) { return j(Cond.E, t); }
    public Assembler jne(Label t) { return j(Cond.NE, t); }
    public Assembler jnz(Label t) { return j(Cond.NE, t); }
    public Assembler jbe(Label t) { return j(Cond.BE, t); }
    public Assembler ja(Label t) { return j(Cond.A, t); }
    public Assembler js(Label t) { return j(Cond.S, t); }
    public Assembler jns(Label t) { return j(Cond.NS, t); }
    public Assembler jl(Label t) { return j(Cond.L, t); }
    public Assembler jge(Label t) { return j(Cond.GE, t); }
    public Assembler jle(Label t) { return j(Cond.LE, t); }
    public Assembler jg(Label t) { return j(Cond.G, t); }

    /** {@code call label}: always rel32. */
    public Assembler call(Label target) { return branch(CALL, 0, target); }

    /** {@code jmp r/m64} (indirect). */
    public Assembler jmp(Operand target) { return indirect(4, "jmp", target); }

    /** {@code call r/m64} (indirect). */
    public Assembler call(Operand target) { return indirect(2, "call", target); }

    private Assembler indirect(int ext, String mn, Operand target) {
        if (target.bits() != 64) throw new IllegalArgumentException(mn + " " + target + ": needs a 64-bit register or qword operand");
        return rm(32, 0xff, ext, null, target, 0, 0); // 64-bit by default: no REX.W
    }

    public Assembler ret() { return plain(32, 0xc3, 0, 0); }

    public Assembler push(Operand src) {
        if (src.bits() != 64) throw new IllegalArgumentException("push " + src + ": only 64-bit pushes are supported");
        if (src instanceof Reg r) return opReg(32, 0x50, r, 0, 0);
        return rm(32, 0xff, 6, null, src, 0, 0);
    }

    /** {@code push imm}: a sign-extended imm8 or imm32, pushed as 64 bits. */
    public Assembler push(long imm) {
        if (imm != (int) imm) throw new IllegalArgumentException("push " + imm + ": does not fit a sign-extended imm32");
        return imm == (byte) imm ? plain(32, 0x6a, 1, imm) : plain(32, 0x68, 4, imm);
    }

    public Assembler pop(Operand dst) {
        if (dst.bits() != 64) throw new IllegalArgumentException("pop " + dst + ": only 64-bit pops are supported");
        if (dst instanceof Reg r) return opReg(32, 0x58, r, 0, 0);
        return rm(32, 0x8f, 0, null, dst, 0, 0);
    }

    // ---------------------------------------------------------------- port I/O

    /** {@code in al|ax|eax, imm8}. */
    public Assembler in(Reg acc, int port) {
        int size = accumulator("in", acc);
        return plain(size, size == 8 ? 0xe4 : 0xe5, 1, port8(port));
    }

    /** {@code in al|ax|eax, dx}. */
    public Assembler in(Reg acc, Reg dx) {
        int size = accumulator("in", acc);
        requireDx("in", dx);
        return plain(size, size == 8 ? 0xec : 0xed, 0, 0);
    }

    /** {@code out imm8, al|ax|eax}. */
    public Assembler out(int port, Reg acc) {
        int size = accumulator("out", acc);
        return plain(size, size == 8 ? 0xe6 : 0xe7, 1, port8(port));
    }

    /** {@code out dx, al|ax|eax}. */
    public Assembler out(Reg dx, Reg acc) {
        int size = accumulator("out", acc);
        requireDx("out", dx);
        return plain(size, size == 8 ? 0xee : 0xef, 0, 0);
    }

    private static int accumulator(String mn, Reg acc) {
        if (acc.number() != 0 || acc.bits() == 64) {
            throw new IllegalArgumentException(mn + ": the data register must be al, ax or eax, not " + acc);
        }
        return acc.bits();
    }

    private static void requireDx(String mn, Reg dx) {
        if (dx != Reg.DX) throw new IllegalArgumentException(mn + ": a variable port must be in dx, not " + dx);
    }

    private static long port8(int port) {
        if (port < 0 || port > 0xff) throw new IllegalArgumentException("port 0x" + Integer.toHexString(port) + " does not fit imm8; use dx");
        return port;
    }

    // ---------------------------------------------------------------- string instructions (rdi/rsi/rcx implicit)

    public Assembler stosb() { return plain(8, 0xaa, 0, 0); }
    public Assembler stosw() { return plain(16, 0xab, 0, 0); }
    public Assembler stosd() { return plain(32, 0xab, 0, 0); }
    public Assembler stosq() { return plain(64, 0xab, 0, 0); }
    public Assembler movsb() { return plain(8, 0xa4, 0, 0); }
    public Assembler movsq() { return plain(64, 0xa5, 0, 0); }

    // ---------------------------------------------------------------- system and miscellaneous

    public Assembler hlt() { return plain(32, 0xf4, 0, 0); }
    public Assembler nop() { return plain(32, 0x90, 0, 0); }
    public Assembler pause() { return plain(32, 0xf390, 0, 0); }
    public Assembler cpuid() { return plain(32, 0x0fa2, 0, 0); }
    /** mov cr3, src (0f 22 /3): loads the page-table root. Only rax..rdi (no REX). */
    public Assembler movCr3(Reg src) {
        if (src.bits() != 64 || src.number() >= 8) throw new IllegalArgumentException("mov cr3 takes rax..rdi, not " + src);
        return plain(32, 0x0f22d8 + src.number(), 0, 0);
    }

    /** Intel's hypercall instruction; KVM (and the ref backend) accept it and vmmcall alike. */
    public Assembler vmcall() { return plain(32, 0x0f01c1, 0, 0); }
    /** AMD's hypercall instruction. */
    public Assembler vmmcall() { return plain(32, 0x0f01d9, 0, 0); }
    public Assembler rdtsc() { return plain(32, 0x0f31, 0, 0); }
    public Assembler mfence() { return plain(32, 0x0faef0, 0, 0); }
    /** Raises #UD: with no IDT, a deliberate triple fault (shutdown exit). */
    public Assembler ud2() { return plain(32, 0x0f0b, 0, 0); }
    public Assembler int3() { return plain(32, 0xcc, 0, 0); }

    // ---------------------------------------------------------------- assembling

    /**
     * Lays out the code, resolves labels and returns the bytes. May be called again after more
     * instructions were added.
     * @throws IllegalStateException when a label is used but never bound
     */
    public byte[] assemble() {
        checkNoPendingPrefix("the end of the code");
        int n = items.size();
        long[] at = new long[n + 1];
        boolean changed;
        do {
            long pc = 0;
            for (int i = 0; i < n; i++) {
                at[i] = pc;
                pc += sizeAt(items.get(i), pc);
            }
            at[n] = pc;
            changed = false;
            for (int i = 0; i < n; i++) {
                if (items.get(i) instanceof Branch b && !b.rel32) {
                    long disp = at[target(b.target)] - (at[i] + 2);
                    if (disp != (byte) disp) {
                        b.rel32 = true;
                        changed = true;
                    }
                }
            }
        } while (changed);
        resolved = at;
        byte[] out = new byte[Math.toIntExact(at[n])];
        for (int i = 0; i < n; i++) {
            int pos = (int) at[i];
            switch (items.get(i)) {
                case Buf b -> {
                    System.arraycopy(b.data, 0, out, pos, b.len);
                    for (Fixup f : b.fixups) {
                        long disp = at[target(f.target)] - (pos + f.end);
                        putLe(out, pos + f.pos, disp, 4);
                    }
                }
                case Branch b -> emitBranch(out, pos, b, at[target(b.target)]);
                case Align a -> Arrays.fill(out, pos, (int) at[i + 1], (byte) 0x90);
                case Label l -> { }
                default -> throw new AssertionError(items.get(i));
            }
        }
        return out;
    }

    /** Guest address of a bound label; valid after {@link #assemble()}. */
    public long address(Label label) {
        if (resolved == null) throw new IllegalStateException("address(" + label + ") before assemble()");
        return origin + resolved[target(label)];
    }

    private int target(Label l) {
        if (l.owner != this) throw new IllegalArgumentException("label " + l + " belongs to another assembler");
        if (!l.isBound()) throw new IllegalStateException("label " + l + " is used but never bound");
        return l.item;
    }

    private static long sizeAt(Object item, long pc) {
        return switch (item) {
            case Buf b -> b.len;
            case Branch b -> b.kind == CALL ? 5 : !b.rel32 ? 2 : b.kind == JMP ? 5 : 6;
            case Align a -> (-pc) & (a.alignment - 1);
            default -> 0;
        };
    }

    private static void emitBranch(byte[] out, int pos, Branch b, long target) {
        int len = (int) sizeAt(b, pos);
        long disp = target - (pos + len);
        if (b.kind == CALL) {
            out[pos] = (byte) 0xe8;
            putLe(out, pos + 1, disp, 4);
        } else if (!b.rel32) {
            out[pos] = (byte) (b.kind == JMP ? 0xeb : 0x70 + b.cond);
            out[pos + 1] = (byte) disp;
        } else if (b.kind == JMP) {
            out[pos] = (byte) 0xe9;
            putLe(out, pos + 1, disp, 4);
        } else {
            out[pos] = 0x0f;
            out[pos + 1] = (byte) (0x80 + b.cond);
            putLe(out, pos + 2, disp, 4);
        }
    }

    private static void putLe(byte[] out, int pos, long v, int len) {
        for (int i = 0; i < len; i++) out[pos + i] = (byte) (v >>> (8 * i));
    }

    // ---------------------------------------------------------------- encoding core

    private Assembler branch(int kind, int cond, Label target) {
        if (target.owner != this) throw new IllegalArgumentException("label " + target + " belongs to another assembler");
        checkNoPendingPrefix("a branch");
        cur = null;
        items.add(new Branch(kind, cond, target));
        return this;
    }

    /**
     * Emits {@code [66][F3][F0][REX] opcode ModRM [SIB] [disp] [imm]}. {@code size} decides the 66
     * prefix (16) and REX.W (64); pass 32 for instructions whose default size is 64 bits.
     * {@code regField} is a register number or a /digit; {@code regOperand} is that register, if any
     * (an 8-bit SPL..DIL there needs an empty REX).
     */
    private Assembler rm(int size, int opcode, int regField, Reg regOperand, Operand rmOperand, int immLen, long imm) {
        Buf b = buf();
        int rex = prefixes(b, size) | ((regField & 8) != 0 ? 4 : 0);
        boolean forceRex = regOperand != null && regOperand.byteRegNeedsRex();
        Mem m = null;
        if (rmOperand instanceof Reg r) {
            rex |= r.high();
            forceRex |= r.byteRegNeedsRex();
        } else {
            m = (Mem) rmOperand;
            if (m.base() != null) rex |= m.base().high();
            if (m.index() != null) rex |= m.index().high() << 1;
        }
        if (rex != 0 || forceRex) b.put(0x40 | rex);
        putOpcode(b, opcode);
        int reg = (regField & 7) << 3;
        int dispPos = -1;
        if (m == null) {
            b.put(0xc0 | reg | ((Reg) rmOperand).low3());
        } else if (m.ripRelative()) {
            b.put(0x05 | reg);
            dispPos = b.len;
            b.putLe(m.disp(), 4);
        } else if (m.base() == null) {
            b.put(0x04 | reg);
            b.put(sib(m.scale(), m.index() == null ? 4 : m.index().low3(), 5));
            b.putLe(m.disp(), 4);
        } else {
            int base = m.base().low3();
            long disp = m.disp();
            int mod = disp == 0 && base != 5 ? 0 : disp == (byte) disp ? 1 : 2;
            if (m.index() != null || base == 4) {
                b.put(mod << 6 | reg | 4);
                b.put(sib(m.scale(), m.index() == null ? 4 : m.index().low3(), base));
            } else {
                b.put(mod << 6 | reg | base);
            }
            if (mod == 1) b.put((int) disp);
            else if (mod == 2) b.putLe(disp, 4);
        }
        b.putLe(imm, immLen);
        if (m != null && m.target() != null) {
            if (m.target().owner != this) throw new IllegalArgumentException("label " + m.target() + " belongs to another assembler");
            b.fixups.add(new Fixup(dispPos, b.len, m.target()));
        }
        return this;
    }

    /** An instruction without ModRM: prefixes, opcode, immediate. */
    private Assembler plain(int size, int opcode, int immLen, long imm) {
        Buf b = buf();
        int rex = prefixes(b, size);
        if (rex != 0) b.put(0x40 | rex);
        putOpcode(b, opcode);
        b.putLe(imm, immLen);
        return this;
    }

    /** An instruction with the register in the opcode's low bits (B8+r, 50+r, 90+r). */
    private Assembler opReg(int size, int opcode, Reg r, int immLen, long imm) {
        Buf b = buf();
        int rex = prefixes(b, size) | r.high();
        if (rex != 0 || r.byteRegNeedsRex()) b.put(0x40 | rex);
        putOpcode(b, opcode + r.low3());
        b.putLe(imm, immLen);
        return this;
    }

    /** Writes the legacy prefixes in GNU as order (66, F3, F0) and returns REX.W as a REX bit. */
    private int prefixes(Buf b, int size) {
        if (size == 16) b.put(0x66);
        if (pendingRep) b.put(0xf3);
        if (pendingLock) b.put(0xf0);
        pendingRep = pendingLock = false;
        return size == 64 ? 8 : 0;
    }

    private static void putOpcode(Buf b, int opcode) {
        if (opcode > 0xffff) b.put(opcode >>> 16);
        if (opcode > 0xff) b.put(opcode >>> 8);
        b.put(opcode);
    }

    private static int sib(int scale, int index, int base) {
        int ss = Integer.numberOfTrailingZeros(scale);
        return ss << 6 | index << 3 | base;
    }

    private Buf buf() {
        if (cur == null) {
            cur = new Buf();
            items.add(cur);
        }
        return cur;
    }

    private void checkNoPendingPrefix(String what) {
        if (pendingLock || pendingRep) {
            throw new IllegalStateException((pendingLock ? "lock" : "rep") + " prefix followed by " + what + " instead of an instruction");
        }
    }

    private static int sameSize(String mn, Reg a, Reg b) {
        if (a.bits() != b.bits()) throw new IllegalArgumentException(mn + " " + a + ", " + b + ": operand sizes differ");
        return a.bits();
    }

    private static int memSize(String mn, Reg r, Mem m) {
        if (m.bits() != 0 && m.bits() != r.bits()) {
            throw new IllegalArgumentException(mn + " " + r + ", " + m + ": operand sizes differ");
        }
        return r.bits();
    }

    private static int sized(String mn, Operand o) {
        if (o.bits() == 0) throw new IllegalArgumentException(mn + " " + o + ": the memory operand needs a size (m8/m16/m32/m64)");
        return o.bits();
    }

    /** Checks that {@code imm} fits an operand of {@code size} bits and returns it sign-extended from that size. */
    private static long imm(long imm, int size, String mn, Operand dst) {
        boolean fits = switch (size) {
            case 8 -> imm >= -0x80 && imm <= 0xff;
            case 16 -> imm >= -0x8000 && imm <= 0xffff;
            case 32 -> imm >= Integer.MIN_VALUE && imm <= 0xffffffffL;
            default -> imm == (int) imm;
        };
        if (!fits) {
            throw new IllegalArgumentException(mn + " " + dst + ", 0x" + Long.toHexString(imm) + ": immediate does not fit "
                    + (size == 64 ? "a sign-extended imm32" : size + " bits"));
        }
        int shift = 64 - size;
        return imm << shift >> shift;
    }

    // ---------------------------------------------------------------- items

    private static final class Buf {
        byte[] data = new byte[64];
        int len;
        final List<Fixup> fixups = new ArrayList<>(0);

        void put(int v) {
            if (len == data.length) data = Arrays.copyOf(data, len * 2);
            data[len++] = (byte) v;
        }

        void putLe(long v, int n) {
            for (int i = 0; i < n; i++) put((int) (v >>> (8 * i)));
        }
    }

    /** A RIP-relative disp32 at {@code pos} in a Buf; the instruction ends at {@code end}. */
    private record Fixup(int pos, int end, Label target) {}

    private static final class Branch {
        final int kind, cond;
        final Label target;
        boolean rel32;

        Branch(int kind, int cond, Label target) {
            this.kind = kind;
            this.cond = cond;
            this.target = target;
            this.rel32 = kind == CALL;
        }
    }

    private record Align(int alignment) {}
}
