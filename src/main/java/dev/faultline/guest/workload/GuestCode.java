package dev.faultline.guest.workload;

import static dev.faultline.guest.asm.Mem.*;
import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Label;
import dev.faultline.guest.asm.Mem;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The frame every workload image shares. Entry checks the boot registers and sets up:
 * <pre>
 *   r12 = first byte of this vCPU's slice      r13 = first byte after it
 *   r14 = {@link PageStamp#vcpuStamp} of this vCPU
 * </pre>
 * then the workload body runs; {@link #finish()} appends OUT PORT_DONE 0 + HLT, the failure exits,
 * the report subroutine and the constants (read RIP-relative, so the code has no absolute addresses
 * other than the region's).
 */
final class GuestCode {
    final Assembler a = new Assembler(RegionLayout.LOAD_GPA);
    private final RegionLayout layout;
    private final Map<Long, Label> constants = new LinkedHashMap<>();
    private final List<Map.Entry<Label, long[]>> tables = new ArrayList<>();
    private final Label halt = a.newLabel("halt"), badCount = a.newLabel("bad_count"), badIndex = a.newLabel("bad_index");
    private final Label report = a.newLabel("report");

    GuestCode(RegionLayout layout) {
        this.layout = layout;
        a.cmp(RSI, layout.vcpus()).jne(badCount)
                .cmp(RDI, RSI).jae(badIndex)
                .mov(R12, constant(layout.sliceBytes())).imul(R12, RDI).add(R12, constant(layout.regionStart()))
                .mov(R13, R12).add(R13, constant(layout.sliceBytes()))
                .lea(R14, addr(RDI, 1)).shl(R14, 48).mov(RAX, PageStamp.MARK).or(R14, RAX);
    }

    /** A 64-bit constant in the data area, as a RIP-relative qword operand. */
    Mem constant(long value) {
        return m64(constants.computeIfAbsent(value, v -> a.newLabel("c_" + Long.toHexString(v))));
    }

    /** A table of 64-bit values in the data area; returns its label (index it after a lea). */
    Label table(String name, long[] values) {
        Label l = a.newLabel(name);
        tables.add(Map.entry(l, values.clone()));
        return l;
    }

    /** Reports rax to the host: OUT eax (low dword), then the high dword. Clobbers rax. */
    void reportRax() { a.call(report); }

    /** The report subroutine (rax in, rax clobbered), for a {@code call} inside a fluent chain. */
    Label reportLabel() { return report; }

    /**
     * Stamps the first word of every page at [rax, rcx) stepping r8 bytes with gpa + rbx (rbx: the
     * vCPU and round stamp). Four instructions per page: the stamped value itself walks, and the
     * address is value - stamp. Needs rax < rcx. Clobbers rax, rcx, rdx.
     */
    void stampPages() {
        a.add(RAX, RBX).add(RCX, RBX).mov(RDX, RBX).neg(RDX);
        Label loop = a.here();
        a.mov(m64(RAX, RDX, 1, 0), RAX).add(RAX, R8).cmp(RAX, RCX).jb(loop);
    }

    /** Ends the vCPU's run with OUT PORT_DONE 0, appends the subroutines and data, and builds the image. */
    GuestImage finish() {
        a.xor(EAX, EAX).out(BootProtocol.PORT_DONE, EAX)
                .bind(halt).hlt().jmp(halt)
                .bind(badCount).mov(EAX, Workloads.DONE_BAD_VCPU_COUNT).out(BootProtocol.PORT_DONE, EAX).jmp(halt)
                .bind(badIndex).mov(EAX, Workloads.DONE_BAD_VCPU_INDEX).out(BootProtocol.PORT_DONE, EAX).jmp(halt)
                .bind(report).out(BootProtocol.PORT_REPORT, EAX).shr(RAX, 32).out(BootProtocol.PORT_REPORT, EAX).ret()
                .align(8);
        for (var c : constants.entrySet()) a.bind(c.getValue()).dq(c.getKey());
        for (var t : tables) {
            a.bind(t.getKey());
            for (long v : t.getValue()) a.dq(v);
        }
        byte[] code = a.assemble();
        if (code.length > RegionLayout.IMAGE_RESERVE) {
            throw new WorkloadException("workload image of " + code.length + " bytes exceeds the " + RegionLayout.IMAGE_RESERVE
                    + " bytes reserved below the region (too many vCPUs or phases?)");
        }
        assert RegionLayout.LOAD_GPA + code.length <= layout.regionStart();
        return GuestImage.of(code, RegionLayout.LOAD_GPA, RegionLayout.LOAD_GPA);
    }
}
