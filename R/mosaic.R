# From host-object matrices to the mosaic the Python side trains on, and back. Shared by the
# Seurat and SingleCellExperiment methods of RunMMAAVI().

# Which cells measured each modality. `counts` is a named list modality -> dgCMatrix (features
# x the cells it has, a subset of `cells` for SeuratObject 5 assays); `observed` the user's
# argument; `table` the cell table. Rules, in order: `observed`, an assay covering a subset of
# the cells, then all-zero columns = not measured (with a message). Each modality is then cut
# into one block per batch (in sorted batch order); with batch.features = "nonzero" a block
# keeps only the features with a count in that batch, so genes a batch never measured (zeros
# from merge()) are unmeasured there, not zero. Returns the blocks the bridge takes:
# modality -> list(list(x, features, cells), ...).
.mosaic_blocks <- function(counts, cells, observed, table, what, verbose, batch,
                           batch.features) {
  if (!is.null(observed)) {
    if (!is.list(observed) && !is.character(observed) || is.null(names(observed)) || any(!nzchar(names(observed)))) {
      .abort("observed must be a named list, modality = a logical ", what, " column name or a vector of cell names, e.g. list(adt = 'has_adt'); found ", .describe(observed), ".")
    }
    unknown <- setdiff(names(observed), names(counts))
    if (length(unknown)) {
      .abort("observed names modalities ", .show(unknown), " that are not being used; the modalities are ", .show(names(counts)), ".")
    }
  }
  zero_counts <- integer()
  blocks <- list()
  for (modality in names(counts)) {
    x <- counts[[modality]]
    if (!is.null(observed[[modality]])) {
      which <- .observed_cells(observed[[modality]], modality, cells, table, what)
      missing <- setdiff(which, colnames(x))
      if (length(missing)) {
        .abort("observed$", modality, " names ", length(missing), " cells that the ", modality, " data does not hold, e.g. ", .show(missing, 3L), ".")
      }
    } else if (ncol(x) < length(cells)) {
      which <- colnames(x)
    } else {
      measured <- Matrix::colSums(x != 0) > 0
      which <- colnames(x)[measured]
      zero_counts[modality] <- sum(!measured)
    }
    if (!length(which)) {
      .abort("no cell measured modality '", modality, "' (all its columns are zero or excluded); drop it from the modalities.")
    }
    keep <- colnames(x) %in% which
    mod_cells <- colnames(x)[keep]
    mod_batch <- batch[match(mod_cells, cells)]
    blocks[[modality]] <- lapply(split(mod_cells, mod_batch), function(block_cells) {
      block <- x[, block_cells, drop = FALSE]
      if (batch.features == "all") {
        return(list(x = block, features = rownames(x), cells = block_cells))
      }
      nonzero <- Matrix::rowSums(block != 0) > 0
      if (!any(nonzero)) {
        .abort("modality '", modality, "': the cells of batch '", mod_batch[match(block_cells[1], mod_cells)], "' that measured it have no count at all; check observed.")
      }
      list(x = block[nonzero, , drop = FALSE], features = rownames(x)[nonzero], cells = block_cells)
    })
    unmeasured <- vapply(blocks[[modality]], function(b) nrow(x) - length(b$features), numeric(1))
    names(blocks[[modality]]) <- NULL
    unmeasured <- unmeasured[unmeasured > 0]
    if (verbose && length(unmeasured)) {
      message(
        "RunMMAAVI: ", modality, " features without a count in any cell of a batch count as not measured there: ",
        paste0(unmeasured, " of ", nrow(x), " in '", names(unmeasured), "'", collapse = ", "),
        ". Set batch.features = \"all\" if they were measured."
      )
    }
  }
  zero_counts <- zero_counts[zero_counts > 0]
  if (verbose && length(zero_counts)) {
    message(
      "RunMMAAVI: cells with an all-zero column count as not measured: ",
      paste0(names(zero_counts), " ", zero_counts, " of ", length(cells), " cells", collapse = ", "),
      ". Pass observed = list(<modality> = <logical column or cell names>) to say it explicitly."
    )
  }
  measured_any <- unique(unlist(lapply(blocks, function(m) lapply(m, `[[`, "cells")), use.names = FALSE))
  none <- setdiff(cells, measured_any)
  if (length(none)) {
    .abort(length(none), " cells measured no modality (all-zero in every assay), e.g. ", .show(none, 3L), ". Remove them first, e.g. subset(object, cells = setdiff(colnames(object), <those>)) or object[, <measured cells>].")
  }
  blocks
}

.observed_cells <- function(spec, modality, cells, table, what) {
  arg <- paste0("observed$", modality)
  if (is.character(spec) && length(spec) == 1L && spec %in% colnames(table)) {
    flag <- table[[spec]]
    if (!is.logical(flag) || anyNA(flag)) {
      .abort(arg, " = '", spec, "' names a ", what, " column that is not logical without NA (found ", class(flag)[1], if (is.logical(flag)) " with NA", "); make it TRUE for the cells that measured ", modality, ", FALSE elsewhere.")
    }
    return(cells[flag])
  }
  if (is.logical(spec) && length(spec) == length(cells) && !anyNA(spec)) {
    return(cells[spec])
  }
  if (is.character(spec)) {
    unknown <- setdiff(spec, cells)
    if (length(unknown)) {
      .abort(arg, ": ", length(unknown), " values are neither a logical ", what, " column nor cell names of the object, e.g. ", .show(unknown, 3L), ". Give a column name or cell names (colnames(object)).")
    }
    return(unique(spec))
  }
  .abort(arg, " must be a logical ", what, " column name, cell names or a logical vector with one value per cell; found ", .describe(spec), ".")
}

# Train on the blocks; every per-cell result in `cells` order.
.fit_mosaic <- function(blocks, cells, batch, labels, n.components, model.dir, seed, threads,
                        verbose, args) {
  obs <- data.frame(cell = cells, batch = factor(batch), stringsAsFactors = FALSE)
  if (!is.null(labels)) obs$label <- labels # a factor: its level order is the class order
  if (verbose) {
    message("RunMMAAVI: training on ", length(cells), " cells, modalities ", paste(names(blocks), collapse = ", "), "; model saved to ", model.dir)
  }
  res <- .py_call(
    "fit", blocks, obs, model.dir,
    batch_key = "batch",
    label_key = if (is.null(labels)) NULL else "label",
    n_components = if (is.null(n.components)) NULL else as.integer(n.components),
    seed = as.integer(seed),
    threads = as.integer(threads),
    verbose = verbose,
    args = args
  )
  .align_outputs(res, cells, "model")
}

# Reorder the bridge's per-cell outputs (model order) to `cells`.
.align_outputs <- function(res, cells, what) {
  idx <- match(cells, res$cells)
  if (anyNA(idx)) {
    .abort(sum(is.na(idx)), " cells of the object are not in the ", what, ", e.g. ", .show(cells[is.na(idx)], 3L), ". Use the object the model was trained on (or subset it, not add cells).")
  }
  latent <- as.matrix(res$latent)[idx, , drop = FALSE]
  dimnames(latent) <- list(cells, paste0("MMAAVI_", seq_len(ncol(latent))))
  attention <- as.matrix(res$attention)[idx, , drop = FALSE]
  dimnames(attention) <- list(cells, unlist(res$modalities))
  out <- list(
    latent = latent,
    attention = attention,
    model.dir = res$model_dir,
    train = res$train_info,
    history = as.data.frame(lapply(res$history, as.vector), check.names = FALSE)
  )
  if (!is.null(res$labels)) {
    out$labels <- factor(unlist(res$labels)[idx], levels = unlist(res$classes))
    out$label.probability <- as.numeric(res$label_probability)[idx]
  }
  out
}

# What RunMMAAVI() keeps with the reduction: where the model is and what made it.
.misc <- function(fit, modalities, batch, labels, n.components, seed) {
  list(
    model.dir = fit$model.dir,
    modalities = modalities,
    batch = batch,
    labels = labels,
    n.components = n.components,
    seed = seed,
    train = fit$train,
    history = fit$history,
    versions = list(
      mmaavi.r = as.character(utils::packageVersion("mmaavi")),
      mmaavi.python = .mmaavi$versions$mmaavi,
      torch = .mmaavi$versions$torch,
      blas = .mmaavi$versions$blas,
      python = .mmaavi$versions$python
    )
  )
}

# Per-cell columns for meta.data / colData.
.cell_columns <- function(fit, prefix) {
  cols <- as.data.frame(fit$attention)
  colnames(cols) <- paste0(prefix, "_attention_", colnames(fit$attention))
  if (!is.null(fit$labels)) {
    cols[[paste0(prefix, "_label")]] <- fit$labels
    cols[[paste0(prefix, "_label_probability")]] <- fit$label.probability
  }
  rownames(cols) <- rownames(fit$latent)
  cols
}
