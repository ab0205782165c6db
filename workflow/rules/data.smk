# Stage 1a, data: obtain raw files (generate, download or verify), then build user sequences.


rule demo_data:
    """Generate the embedded demo dataset (deterministic by seed)."""
    output:
        directory("resources/{dataset}/demo"),
    params:
        users=lambda wc: dataset_entry(wc)["users"],
        n_items=lambda wc: dataset_entry(wc)["items"],
        topics=lambda wc: dataset_entry(wc)["topics"],
        seed=lambda wc: dataset_entry(wc)["seed"],
    log:
        "results/{dataset}/logs/demo_data.log",
    benchmark:
        "results/{dataset}/benchmarks/demo_data.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan demo-data --out {output} --users {params.users} --items {params.n_items}"
        " --topics {params.topics} --seed {params.seed} > {log} 2>&1"


rule download_microlens:
    """Download MicroLens from its official site: resumable, retried, checked."""
    output:
        "resources/{dataset}/download/manifest.json",
    params:
        url=lambda wc: dataset_entry(wc)["url"],
        variant=lambda wc: dataset_entry(wc)["variant"],
        max_items=lambda wc: (
            f"--max-items {dataset_entry(wc)['max_items']}" if "max_items" in dataset_entry(wc) else ""
        ),
        workers=config["download"]["workers"],
        retries=config["download"]["retries"],
        limits=(
            f"--timeout {config['download']['timeout_s']}"
            f" --min-bytes-per-s {config['download']['min_bytes_per_s']}"
            f" --stall-window {config['download']['stall_window_s']}"
            f" --deadline {config['download']['deadline_s']}"
        ),
    log:
        "results/{dataset}/logs/download.log",
    benchmark:
        "results/{dataset}/benchmarks/download.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=24 * 60,
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan --progress-fd 3 download --base-url {params.url} --variant {params.variant}"
        " --out resources/{wildcards.dataset}/download --workers {params.workers}"
        " --retries {params.retries} {params.limits} {params.max_items} 3>&2 > {log} 2>&1"


rule dataset_manifest:
    """Check the raw layout and record where the files are (a structural gap stops here).
    For a user's data_dir, the input is the state of its layout, so a changed file inside it
    does not rewrite the manifest (which every later step reads)."""
    input:
        raw_dir_input,
    output:
        "resources/{dataset}/dataset.json",
    params:
        data_dir=raw_dir,
        kind=lambda wc: dataset_entry(wc)["kind"],
    log:
        "results/{dataset}/logs/dataset_manifest.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan verify-data --data-dir {params.data_dir} --name {wildcards.dataset}"
        " --kind {params.kind} --dataset-json {output} > {log} 2>&1"


rule layout_report:
    """List exactly which items lack a title, cover or video; redone on any raw change."""
    input:
        manifest="resources/{dataset}/dataset.json",
        raw=raw_parts,
    output:
        "results/{dataset}/data/layout_report.json",
    params:
        data_dir=raw_dir,
        kind=lambda wc: dataset_entry(wc)["kind"],
    log:
        "results/{dataset}/logs/layout_report.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan verify-data --data-dir {params.data_dir} --name {wildcards.dataset}"
        " --kind {params.kind} --report {output} > {log} 2>&1"


rule sequences:
    """Interactions -> deduplicated, filtered, truncated, leave-one-out user sequences and the
    item and user id mappings (no titles: a corrected title must not rerun what reads only the ids)."""
    input:
        manifest="resources/{dataset}/dataset.json",
        pairs=raw_part("pairs"),
    output:
        item_ids="results/{dataset}/data/item_ids.csv",
        user_ids="results/{dataset}/data/user_ids.csv",
        sequences="results/{dataset}/data/sequences.parquet",
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        stats="results/{dataset}/data/stats.json",
    params:
        min_interactions=config["sequences"]["min_interactions"],
        max_items=config["sequences"]["max_items"],
        catalogue=config["sequences"]["catalogue"],
    log:
        "results/{dataset}/logs/sequences.log",
    benchmark:
        "results/{dataset}/benchmarks/sequences.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan sequences --dataset-json {input.manifest} --out results/{wildcards.dataset}/data"
        " --min-interactions {params.min_interactions} --max-items {params.max_items}"
        " --catalogue {params.catalogue} > {log} 2>&1"


rule item_titles:
    """Each item's title (empty when it has none): items.csv, which text extraction and the
    end-to-end runs read."""
    input:
        manifest="resources/{dataset}/dataset.json",
        item_ids="results/{dataset}/data/item_ids.csv",
        titles=raw_part("titles"),
    output:
        item_table="results/{dataset}/data/items.csv",
        report="results/{dataset}/data/titles.json",
    log:
        "results/{dataset}/logs/item_titles.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "crossan item-titles --dataset-json {input.manifest} --item-ids {input.item_ids}"
        " --out {output.item_table} --report {output.report} > {log} 2>&1"
