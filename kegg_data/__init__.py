"""Everything that turns files and datasets into model inputs: VCF/FASTA windows and their policies, task
classes (KEGG, variant effect), users' own datasets, annotated labelled variants. Nothing here imports torch."""
