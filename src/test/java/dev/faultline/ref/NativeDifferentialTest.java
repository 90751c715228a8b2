package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.ref.x86.Decoder;
import dev.faultline.ref.x86.FlagEffect;
import dev.faultline.ref.x86.Insn;
import dev.faultline.ref.x86.Op;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Differential test against the real CPU: the same generated instruction sequences run natively (a
 * host program built with gcc) and in the ref interpreter; results and arithmetic flags must agree.
 * KVM executes guest code natively on this same CPU, so this is what the kvm backend will produce.
 *
 * <p>The interpreter models an Intel CPU's choices for the flags the architecture leaves undefined, so
 * on an Intel host every flag is compared. On any other vendor (AMD makes other choices) each case
 * compares only the flags {@link FlagEffect} says it leaves defined, and says so.
 */
class NativeDifferentialTest {
    static final long ARITH = 0x8d5;
    static final int WORDS = 5;  // rax rbx rcx rdx rflags per case

    record Case(String insn, long a, long b, long c, long d, long flags) {}

    static final long[] SPECIAL = {0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x7fffffffL, 0x80000000L,
            0xffffffffL, 0x100000000L, Long.MAX_VALUE, Long.MIN_VALUE, -1L, -2L, 0x0f0f0f0f0f0f0f0fL, 31, 32, 63, 64};

    static long value(Random rnd) {
        return switch (rnd.nextInt(4)) {
            case 0 -> SPECIAL[rnd.nextInt(SPECIAL.length)];
            case 1 -> rnd.nextInt(256) - 128;
            case 2 -> rnd.nextLong() >>> rnd.nextInt(64);
            default -> rnd.nextLong();
        };
    }

    static final String[] SUF = {"b", "w", "l", "q"};
    static final String[][] REG = {{"%al", "%bl", "%cl", "%dl"}, {"%ax", "%bx", "%cx", "%dx"},
            {"%eax", "%ebx", "%ecx", "%edx"}, {"%rax", "%rbx", "%rcx", "%rdx"}};

    static List<Case> cases(long seed, int perInsn) {
        Random rnd = new Random(seed);
        List<String> insns = new ArrayList<>();
        for (int s = 0; s < 4; s++) {
            String x = SUF[s], a = REG[s][0], b = REG[s][1];
            for (String op : new String[]{"add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test"}) {
                insns.add(op + x + " " + b + ", " + a);
            }
            for (String op : new String[]{"inc", "dec", "neg", "not", "mul", "imul"}) insns.add(op + x + " " + (op.equals("mul") || op.equals("imul") ? b : a));
            for (String op : new String[]{"shl", "shr", "sar", "rol", "ror", "rcl", "rcr"}) {
                insns.add(op + x + " %cl, " + a);
                insns.add(op + x + " $1, " + a);
                insns.add(op + x + " $" + (1 + rnd.nextInt(s == 3 ? 63 : 31)) + ", " + a);
            }
            insns.add("cmpxchg" + x + " " + b + ", " + REG[s][3]);
            insns.add("xadd" + x + " " + b + ", " + a);
            insns.add("xchg" + x + " " + b + ", " + a);
            insns.add("add" + x + " $" + rnd.nextInt(128) + ", " + a);
            insns.add("sub" + x + " $-" + rnd.nextInt(128) + ", " + a);
            if (s > 0) {
                insns.add("imul" + x + " " + b + ", " + a);
                insns.add("imul" + x + " $" + (rnd.nextInt(2000) - 1000) + ", " + b + ", " + a);
                for (String op : new String[]{"bsf", "bsr", "tzcnt", "lzcnt", "popcnt"}) insns.add(op + x + " " + b + ", " + a);
                for (String op : new String[]{"bt", "bts", "btr", "btc"}) {
                    insns.add(op + x + " " + b + ", " + a);
                    insns.add(op + x + " $" + rnd.nextInt(64) + ", " + a);
                }
                insns.add("shld" + x + " %cl, " + b + ", " + a);
                insns.add("shrd" + x + " %cl, " + b + ", " + a);
                insns.add("shld" + x + " $" + (1 + rnd.nextInt(s == 3 ? 63 : 15)) + ", " + b + ", " + a);
                insns.add("shrd" + x + " $" + (1 + rnd.nextInt(s == 3 ? 63 : 15)) + ", " + b + ", " + a);
                for (int cc = 0; cc < 16; cc++) insns.add("cmov" + CC[cc] + x + " " + b + ", " + a);
            }
            if (s == 0) for (int cc = 0; cc < 16; cc++) insns.add("set" + CC[cc] + " %al");
            // Memory operands (a stack slot), locked and not.
            String d = REG[s][3];
            insns.add("push %rax; lock add" + x + " " + b + ", (%rsp); pop %rax");
            insns.add("push %rax; sbb" + x + " (%rsp), " + b + "; pop %rax");
            insns.add("push %rax; cmp" + x + " $" + rnd.nextInt(100) + ", (%rsp); pop %rax");
            insns.add("push %rax; lock xadd" + x + " " + b + ", (%rsp); pop %rax");
            insns.add("push %rdx; lock cmpxchg" + x + " " + b + ", (%rsp); pop %rdx");
            insns.add("push %rdx; cmpxchg" + x + " " + b + ", (%rsp); pop %rdx");
            insns.add("push %rax; shl" + x + " %cl, (%rsp); pop %rax");
            insns.add("push %rax; rol" + x + " $3, (%rsp); pop %rax");
            insns.add("push %rax; ror" + x + " $" + (2 + rnd.nextInt(6)) + ", (%rsp); pop %rax");
            insns.add("push %rax; rcr" + x + " $" + (2 + rnd.nextInt(6)) + ", (%rsp); pop %rax");
            insns.add("push %rax; sar" + x + " $" + (2 + rnd.nextInt(6)) + ", (%rsp); pop %rax");
            insns.add("push %rax; lock neg" + x + " (%rsp); pop %rax");
            insns.add("push %rax; lock dec" + x + " (%rsp); pop %rax");
            insns.add("push %rax; lock not" + x + " (%rsp); pop %rax");
            insns.add("push %rax; xchg" + x + " " + b + ", (%rsp); pop %rax");
            insns.add("push %rax; test" + x + " " + d + ", (%rsp); pop %rax");
            if (s > 0) {
                insns.add("push %rax; lock bts" + x + " $" + rnd.nextInt(8 << s) + ", (%rsp); pop %rax");
                insns.add("push %rax; lock btc" + x + " $" + rnd.nextInt(8 << s) + ", (%rsp); pop %rax");
                insns.add("push %rax; imul" + x + " (%rsp), " + b + "; pop %rax");
                insns.add("push %rax; shld" + x + " %cl, " + b + ", (%rsp); pop %rax");
            }
        }
        insns.add("bswap %eax");
        insns.add("bswap %rax");
        for (String c : new String[]{"cbtw", "cwtl", "cltq", "cwtd", "cltd", "cqto", "lahf", "sahf", "clc", "stc", "cmc"}) insns.add(c);
        insns.add("movzbl %bl, %eax");
        insns.add("movzwq %bx, %rax");
        insns.add("movsbq %bl, %rax");
        insns.add("movswl %bx, %eax");
        insns.add("movslq %ebx, %rax");
        insns.add("movb %bh, %ah");
        insns.add("movb %ah, %bl");
        insns.add("leaq 7(%rax,%rbx,4), %rcx");
        insns.add("leal -9(%rax,%rbx,8), %ecx");
        insns.add("leaw 3(%rbx), %ax");
        List<Case> out = new ArrayList<>();
        for (String insn : insns) {
            for (int k = 0; k < perInsn; k++) {
                long flags = rnd.nextBoolean() ? 0 : rnd.nextBoolean() ? ARITH : rnd.nextLong() & ARITH;
                long c = rnd.nextInt(3) == 0 ? value(rnd) : rnd.nextInt(80);
                out.add(new Case(insn, value(rnd), value(rnd), c, value(rnd), flags));
            }
        }
        // Division: operands chosen so that no case raises #DE natively.
        for (int s = 0; s < 4; s++) {
            for (int k = 0; k < perInsn * 4; k++) {
                int bits = 8 << s;
                long m = s == 3 ? -1L : (1L << bits) - 1;
                long d = value(rnd) & m;
                if (d == 0) d = 3;
                long a = value(rnd), hi;
                boolean signed = k % 2 == 1;
                long fl = (k / 2) % 2 == 0 ? 0 : ARITH;
                if (!signed) {
                    hi = Long.remainderUnsigned(value(rnd) & m, d);
                    long dd = d;
                    out.add(new Case("div" + SUF[s] + " " + REG[s][1], s == 0 ? (a & ~0xffffL) | (hi << 8) | (a & 0xff) : a, dd, 0,
                            s == 0 ? 0 : hi, fl));
                } else {
                    // dividend = sign extension of a small value, divisor not -1 when it could overflow
                    long small = s == 0 ? rnd.nextInt(200) - 100 : rnd.nextInt(2000) - 1000;
                    long sd = d;
                    if ((sd & m) == m) sd = 7;
                    if (s == 0) {
                        long ax = small & 0xffff;
                        out.add(new Case("idivb %bl", ax, sd, 0, 0, fl));
                    } else {
                        long lo = small & m, hiv = small < 0 ? m : 0;
                        out.add(new Case("idiv" + SUF[s] + " " + REG[s][1], lo, sd, 0, hiv, fl));
                    }
                }
            }
        }
        return out;
    }

    static final String[] CC = {"o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"};

    /** The test body as a function run_tests(uint64_t *out) (System V ABI), usable natively and in a guest. */
    static String asm(List<Case> cases) {
        StringBuilder sb = new StringBuilder();
        sb.append(".text\n.globl run_tests\nrun_tests:\n push %rbx\n push %r15\n");
        for (Case c : cases) {
            sb.append(" movabs $").append(c.a).append(", %rax\n");
            sb.append(" movabs $").append(c.b).append(", %rbx\n");
            sb.append(" movabs $").append(c.c).append(", %rcx\n");
            sb.append(" movabs $").append(c.d).append(", %rdx\n");
            sb.append(" pushq $").append(c.flags | 2).append("\n popfq\n");
            sb.append(" ").append(c.insn.replace("; ", "\n ")).append("\n");
            sb.append(" pushfq\n pop %r15\n");
            sb.append(" mov %rax, 0(%rdi)\n mov %rbx, 8(%rdi)\n mov %rcx, 16(%rdi)\n mov %rdx, 24(%rdi)\n mov %r15, 32(%rdi)\n");
            sb.append(" add $40, %rdi\n");
        }
        sb.append(" pop %r15\n pop %rbx\n ret\n");
        return sb.toString();
    }

    @Test
    void shouldMatchTheHostCpuOnResultsAndFlagsOfEverySupportedArithmeticInstruction() {
        List<Case> cases = cases(Long.getLong("faultline.diffSeed", 20240601L), 24);
        String body = asm(cases);
        int n = cases.size();
        String main = """
                #include <cpuid.h>
                #include <stdio.h>
                #include <stdint.h>
                #include <stdlib.h>
                #include <string.h>
                void run_tests(uint64_t *out);
                int main(void) {
                  unsigned a, b, c, d;
                  char vendor[13] = {0};
                  __get_cpuid(0, &a, &b, &c, &d);
                  memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4);
                  printf("%%s\\n", vendor);
                  uint64_t *buf = calloc(%d, 8);
                  run_tests(buf);
                  for (int i = 0; i < %d; i++) printf("%%016llx\\n", (unsigned long long) buf[i]);
                  return 0;
                }
                """.formatted(n * WORDS, n * WORDS);
        String nativeOut = Toolchain.runNative(main, "t.s", body);
        String[] all = nativeOut.trim().split("\n");
        String vendor = all[0];
        String[] lines = Arrays.copyOfRange(all, 1, all.length);
        assertEquals(n * WORDS, lines.length, "native output lines");

        long outGpa = 0x800000;
        byte[] img = Toolchain.assemble(" mov $" + outGpa + ", %rdi\n call run_tests\n mov $0, %eax\n out %eax, $0xf4\n hlt\n" + body);
        // ref models Intel's choices for undefined flags: compare them all there, only the defined ones elsewhere.
        boolean intel = vendor.equals("GenuineIntel");
        long[][] compared = intel ? null : definedBitsPerCase(img, cases);
        if (!intel) {
            long flagsMasked = Arrays.stream(compared).filter(w -> w[4] != FlagEffect.STATUS).count();
            long resultsMasked = Arrays.stream(compared).filter(w -> w[0] != -1L || w[1] != -1L || w[2] != -1L || w[3] != -1L).count();
            System.out.printf("NativeDifferentialTest: host CPU vendor %s, not GenuineIntel: comparing only what the architecture"
                    + " defines (%d of %d cases leave some flag undefined, %d leave their destination undefined; those are masked)%n",
                    vendor, flagsMasked, n, resultsMasked);
        }
        try (GuestMachine m = new GuestMachine(32L << 20, img, 1)) {
            GuestMachine.Result r = m.runUntilDone();
            assertEquals(0, r.doneCode, () -> "guest did not finish: " + r);
            StringBuilder diffs = new StringBuilder();
            int mismatches = 0;
            java.util.Map<String, Integer> perInsn = new java.util.HashMap<>();
            for (int i = 0; i < n; i++) {
                Case c = cases.get(i);
                StringBuilder one = new StringBuilder();
                String[] names = {"rax", "rbx", "rcx", "rdx", "rflags"};
                for (int w = 0; w < WORDS; w++) {
                    long expect = Long.parseUnsignedLong(lines[i * WORDS + w], 16);
                    long actual = m.read64(outGpa + 8L * (i * WORDS + w));
                    long mask = w == 4 ? ARITH : -1L;
                    if (!intel) mask &= compared[i][w];
                    expect &= mask;
                    actual &= mask;
                    if (expect != actual) {
                        one.append(String.format(" %s native=%x ref=%x", names[w], expect, actual));
                        if (w == 4) one.append(" (diff ").append(flagNames(expect ^ actual)).append(")");
                    }
                }
                if (one.length() > 0) {
                    mismatches++;
                    if (perInsn.merge(c.insn, 1, Integer::sum) <= 2 && mismatches <= 400) {
                        diffs.append(String.format("%s [a=%x b=%x c=%x d=%x f=%x]:%s%n", c.insn, c.a, c.b, c.c, c.d, c.flags, one));
                    }
                }
            }
            assertEquals(0, mismatches, () -> "of " + n + " cases:\n" + diffs);
        }
    }

    /**
     * For each case, the bits of each output word (rax rbx rcx rdx rflags) the architecture defines.
     * All six status flags are defined on entry (popfq); the case's instructions are those ref runs,
     * decoded from the image between its popfq and pushfq, and {@link FlagEffect} says which flags each
     * leaves defined (a shift by CL counts by the case's RCX). An instruction whose destination is
     * undefined (16-bit SHLD/SHRD by more than 16, BSF/BSR of 0) masks that destination: a register,
     * or the stack slot the case pops back into RAX.
     */
    static long[][] definedBitsPerCase(byte[] img, List<Case> cases) {
        long[][] out = new long[cases.size()][];
        Decoder decoder = new Decoder();
        Insn in = new Insn();
        int caseIndex = -1;
        boolean inCase = false;
        for (int pos = 0; pos < img.length; pos += in.len) {
            byte[] window = Arrays.copyOfRange(img, pos, Math.min(img.length, pos + Decoder.MAX_LEN + 1));
            assertEquals(Decoder.OK, decoder.decode(window, window.length, in), "decoding at offset " + pos);
            if (in.op == Op.POPF) {
                caseIndex++;
                out[caseIndex] = new long[] {-1L, -1L, -1L, -1L, FlagEffect.STATUS};
                inCase = true;
            } else if (in.op == Op.PUSHF) {
                inCase = false;
            } else if (inCase) {
                Case c = cases.get(caseIndex);
                long[] words = out[caseIndex];
                words[4] = FlagEffect.of(in, c.c()).after(words[4]);
                // BSF/BSR write reg from r/m; SHLD/SHRD write r/m from reg.
                boolean scan = in.op == Op.BSF || in.op == Op.BSR;
                long source = scan && !in.mem ? register(c, in.rm) : 0;
                if ((scan || in.op == Op.SHLD || in.op == Op.SHRD) && FlagEffect.destinationUndefined(in, c.c(), source)) {
                    int word = scan ? WORD_OF_REGISTER[in.reg] : in.mem ? 0 : WORD_OF_REGISTER[in.rm];
                    words[word] &= in.size >= 4 ? 0 : -1L << (in.size * 8);  // a 32-bit write zero-extends: all of it
                }
            }
        }
        assertEquals(cases.size() - 1, caseIndex, "one popfq per case in the image");
        return out;
    }

    /** Output word of registers 0..3 in x86 numbering (rax rcx rdx rbx): the words are rax rbx rcx rdx. */
    private static final int[] WORD_OF_REGISTER = {0, 2, 3, 1};

    /** The value a case puts in register {@code r} (x86 numbering; only rax..rbx carry case values). */
    private static long register(Case c, int r) {
        return switch (r) {
            case 0 -> c.a();
            case 1 -> c.c();
            case 2 -> c.d();
            case 3 -> c.b();
            default -> throw new AssertionError("a case uses only rax, rbx, rcx, rdx, got register " + r);
        };
    }

    static String flagNames(long f) {
        StringBuilder sb = new StringBuilder();
        String[] names = {"CF", "", "PF", "", "AF", "", "ZF", "SF", "", "", "", "OF"};
        for (int i = 0; i < names.length; i++) if ((f >> i & 1) != 0 && !names[i].isEmpty()) sb.append(names[i]).append(' ');
        return sb.toString().trim();
    }
}
