// SPDX-License-Identifier: GPL-2.0
/*
 * Counters kept per CPU, for what the I/O path counts: adding touches only
 * the local CPU's copy, with no atomic instruction and no cache line shared
 * with other CPUs; a read sums the copies of every possible CPU. A sum is
 * exact once nothing adds any more, and otherwise a value the counter had
 * at some moment of the read only if every change is an increase.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/percpu.h>

#include "blksnap_glue.h"

/*
 * The Rust side holds the per-CPU pointer as a plain one. The conversions
 * go through an integer: on x86 a per-CPU pointer may be of another
 * address space (__seg_gs), which pointer casts warn about.
 */
static u64 __percpu *pcpu(const void *counters)
{
	return (u64 __percpu __force *)(unsigned long)counters;
}

static u64 *plain(u64 __percpu *counters)
{
	return (u64 __force *)(unsigned long __force)counters;
}

u64 *blksnap_pcpu_alloc(unsigned int count)
{
	return plain(__alloc_percpu(count * sizeof(u64), __alignof__(u64)));
}

void blksnap_pcpu_free(u64 *counters)
{
	free_percpu(pcpu(counters));
}

/* Callable in any context, interrupts included. */
void notrace blksnap_pcpu_add(u64 *counters, unsigned int index, s64 delta)
{
	u64 __percpu *c = pcpu(counters);

	this_cpu_add(c[index], delta);
}

/* Wraps like the per-CPU copies: read it as signed where they may be. */
u64 blksnap_pcpu_sum(u64 *counters, unsigned int index)
{
	u64 __percpu *c = pcpu(counters);
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += READ_ONCE(*per_cpu_ptr(&c[index], cpu));
	return sum;
}

static int pcpu_get(void *data, u64 *val)
{
	*val = blksnap_pcpu_sum(data, 0);
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(pcpu_fops, pcpu_get, NULL, "%llu\n");

/*
 * A read-only debugfs file showing the sum of counter index. Reading it
 * holds the file against removal (debugfs_file_get), so the counters may
 * be freed once the file or its directory is removed.
 */
void blksnap_pcpu_debugfs(const char *name, struct dentry *parent,
			  u64 *counters, unsigned int index)
{
	u64 __percpu *c = pcpu(counters);

	debugfs_create_file_unsafe(name, 0444, parent, plain(&c[index]), &pcpu_fops);
}
