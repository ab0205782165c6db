# Stage 1b: run each frozen encoder once per dataset; cache the pooled hidden state of each
# kept layer in HDF5. Extraction is split into item shards (separate jobs, one GPU each on
# a cluster) and merged; with `features.shards: 1` there is one shard.


rule tiny_encoders:
    """Seeded random small BERT/ViT/VideoMAE/AST with a vocabulary from the dataset's titles."""
    input:
        "results/{dataset}/data/items.csv",
    output:
        directory("resources/models/tiny-{dataset}"),
    params:
        seed=lambda wc: dataset_entry(wc).get("seed", 0),
    log:
        "results/{dataset}/logs/tiny_encoders.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan tiny-encoders --items {input} --out {output} --seed {params.seed} > {log} 2>&1"


rule extract_features:
    """One shard of one modality's encoder pass: batched, resumable, masked like the media."""
    input:
        item_table=encoder_item_table,  # titles for text, only the ids otherwise
        media=media_input,
        model=encoder_model_input,
        settings=suffix("features"),
    output:
        "results/{dataset}/features{features_x}/shards/{modality}-{shard}-of-{num_shards}.h5",
    wildcard_constraints:
        modality=r"text|image|video|audio",
        shard=r"\d+",
        num_shards=r"\d+",
    params:
        model=encoder_setting("model"),
        layers=lambda wc: ",".join(str(i) for i in encoder_setting("layers")(wc)),
        batch_size=encoder_setting("batch_size"),
        max_length=lambda wc: (
            f"--max-length {encoder_setting('max_length')(wc)}"
            if "max_length" in encoder_spec(config, wc.dataset, wc.modality)
            else ""
        ),
        media_flag=lambda wc, input: f"--media {input.media}" if input.media else "",
        device=config["device"],
        chunk_batches=config["features"]["chunk_batches"],
    log:
        "results/{dataset}/logs/extract{features_x}_{modality}_{shard}-of-{num_shards}.log",
    benchmark:
        "results/{dataset}/benchmarks/extract{features_x}_{modality}_{shard}-of-{num_shards}.tsv"
    threads: config["features"]["threads"]
    resources:
        mem_mb=by_dataset(3000, 8000),
        runtime=by_dataset(60, 24 * 60),
        gpu=config["features"]["gpu"],
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan --progress-fd 3 extract-features --modality {wildcards.modality} --model {params.model}"
        " --layers {params.layers} --batch-size {params.batch_size} {params.max_length}"
        " --items {input.item_table} {params.media_flag} --out {output}"
        " --shard {wildcards.shard} --num-shards {wildcards.num_shards}"
        " --chunk-batches {params.chunk_batches} --device {params.device} --threads {threads}"
        " 3>&2 > {log} 2>&1"


rule merge_features:
    """Gather a modality's shards into one file (checked: same config, every row once)."""
    input:
        shards=feature_shards,
        settings=suffix("features"),
    output:
        "results/{dataset}/features{features_x}/{modality}.h5",
    wildcard_constraints:
        modality=r"text|image|video|audio",
    log:
        "results/{dataset}/logs/merge_features{features_x}_{modality}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan merge-features --out {output} {input.shards} > {log} 2>&1"
