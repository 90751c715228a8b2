package dev.faultline.vmm;

import dev.faultline.hv.Regs;
import java.util.Map;

/** What one vCPU did: how it ended, its final registers, exits, reports and timing. */
public record VcpuResult(int index, VcpuOutcome outcome, long doneCode, String detail, Regs regs,
                         ExitLog exits, Map<String, Long> exitCounts, long[] reports, String console,
                         long runNanos) {}
